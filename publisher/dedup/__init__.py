"""Dedup: which incoming articles are copies, re-publications or carry boilerplate.

rules.py decides (exact copy, re-publication, boilerplate and teasers), minhash.py makes
the signatures and finds near-duplicates, overlay.py is what the later files of a batch
see of the earlier ones. Pure: no I/O, no clock; the store feeds them plain rows.
"""
