"""Local AI Suite: a self-hosted, fault-tolerant local AI stack."""

__version__ = "0.1.0"
