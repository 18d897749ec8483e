"""streamnmf: streaming non-negative matrix factorization with provable recovery."""

__version__ = "0.1.0"
