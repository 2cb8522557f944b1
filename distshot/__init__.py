"""distshot: screenshots of many URLs, on one laptop or a fleet."""

__version__ = "0.1.0"
