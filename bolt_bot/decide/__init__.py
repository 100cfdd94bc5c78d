"""Deciding: reading benchmark JSON, statistics through scipy, and every verdict rule (wall time, confirmation, counts)."""
