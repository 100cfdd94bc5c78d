"""Profiling: cProfile collection, differential profiles of regressed stages, flame graphs and the full `bolt profile` report."""
