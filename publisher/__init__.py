"""publisher: article inbox -> de-duplicated store -> feeds and digest emails."""

__version__ = "0.1.0"
