"""Bolt's detection-quality benchmark (see run.py and benchmarks/README.md)."""
