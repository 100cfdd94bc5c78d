"""Measuring: worktrees, environments, the process runner, rounds, wall time, speed gate, instruction counts, routing; returns measurements, never verdicts."""
