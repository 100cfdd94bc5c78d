"""Deciding: reading pytest-benchmark JSON, the statistics, every verdict rule and the approval gate; returns `Results`."""
