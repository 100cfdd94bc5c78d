"""Bolt: performance review of pull requests for Python projects."""

__version__ = "0.1.0"
