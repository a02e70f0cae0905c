"""Nearline: local, offline code completion over LSP."""

__version__ = "0.1.0"
