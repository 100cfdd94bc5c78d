"""Standalone: the arguments of one `benchmark.pedantic` call, as pytest-benchmark passes them.

Shared by the plugins that replace pytest-benchmark's fixture inside the measured environment (the paired
worker, the profiler), so each call of the target gets what pytest-benchmark would give it: the setup's
return value when it returns one, else `args` and `kwargs`.
"""

from __future__ import annotations


def pedantic_arguments(args, kwargs, setup):
    """A function returning (args, kwargs) for one call, running `setup` first when there is one."""
    has_args = bool(args or kwargs)

    def arguments():
        if setup is None:
            return args, kwargs
        produced = setup()
        if produced:
            if has_args:
                raise TypeError("Can't use `args` or `kwargs` if `setup` returns the arguments.")
            return produced
        return args, kwargs

    return arguments
