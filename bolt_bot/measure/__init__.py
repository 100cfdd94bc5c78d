"""Measuring: worktrees, environments, the measured processes (rounds, discovery, instruction counts) and the probe plugins; returns measurements, never verdicts."""
