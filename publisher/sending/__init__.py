"""Use cases of sending digests: runs and fan-out, who is due, the one message producer,
claims for several senders, the dry run, and what a send reports."""
