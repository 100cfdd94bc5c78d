"""Profiling: cProfile collection, differential profiles of regressed stages, flame graphs and `bolt profile`'s full report."""
