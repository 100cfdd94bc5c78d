"""Dataclasses to and from JSON data: type checks of untrusted documents, and fast plain copies for writing."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import math
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any

SCALARS = frozenset({str, int, float, bool, type(None)})


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a bulk of objects is built that stay alive (a 10,000-stage results
    document is half a million dicts, lists and dataclasses): the collector would walk them again and again
    for nothing, a third of the time to read one, a seventh of compare's."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def short(value: Any, limit: int = 60) -> str:
    """repr of a value from an untrusted file, cut so that an error message stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------------ the full check

def checked(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against a field's type (str, int, float, bool, X | None, list[X], dict, a dataclass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return checked(value, hint, where)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    kind = origin or hint
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} is {short(value)}, expected a number")
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"{where} is too large a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{where} is {number}, expected a finite number")
        return number
    if kind is int and isinstance(value, bool):
        raise ValueError(f"{where} is {short(value)}, expected an integer")
    if not isinstance(value, kind):
        raise ValueError(f"{where} is {short(value)}, expected {kind.__name__}")
    if kind is list and args:
        return [checked(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def build(cls: type, data: Any, where: str) -> Any:
    """A dataclass from a JSON object: known keys type-checked, unknown keys ignored (newer writers)."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or cls.__name__} is {short(data)}, expected an object")
    values = {}
    for name, hint, required in fields(cls):
        if name in data:
            values[name] = checked(data[name], hint, f"{where}.{name}".lstrip("."))
        elif required:
            raise ValueError(f"{where or cls.__name__} has no {name!r}")
    return cls(**values)


@functools.cache
def fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, type, required) of a dataclass's fields, worked out once: get_type_hints is slow."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                 for f in dataclasses.fields(cls))


# ----------------------------------------------------------------------------------------------- the quick check
# Reading 10,000 stages through `checked` alone took seconds. The quick check takes only the exact types a
# JSON parser returns and raises Unsure at anything else (an integer in a float field, a missing field, a
# wrong type), so that it never accepts what `checked` refuses and returns what `checked` would; on Unsure
# the caller runs `build`, which decides and words the error. tests/test_scale.py holds the two to that.

class Unsure(Exception):
    """The quick check cannot vouch for a value: the full check decides."""


_FLOAT = {float}


def _finite_list(value: Any) -> list[float]:
    if type(value) is list and (not value or set(map(type, value)) == _FLOAT):
        total = sum(value)  # inf or nan when a value is (or when the sum overflows: the full check then decides)
        if total - total == 0.0:
            return list(value)
    raise Unsure


def _any(value: Any) -> Any:
    return value


def _listed(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def each(value: Any) -> list[Any]:
        if type(value) is list:
            return [check(v) for v in value]
        raise Unsure
    return each


def _unsure(value: Any) -> Any:
    raise Unsure


@functools.cache
def _plan(hint: Any) -> tuple[type | None, bool, Callable[[Any], Any]]:
    """(the exact type taken as it is, None allowed, the check of anything else) for a field's type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        kind, _, check = _plan(inner)
        return kind, True, check
    if hint is Any:
        return None, True, _any
    if dataclasses.is_dataclass(hint):
        return None, False, quick_builder(hint)
    kind = origin or hint
    if kind is list and args:
        return None, False, _finite_list if args[0] is float else _listed(_check_of(args[0]))
    return kind, False, _unsure  # str, int, bool, float, dict, list: that type exactly, else the full check


def _check_of(hint: Any) -> Callable[[Any], Any]:
    """One value of `hint`, quickly (the items of a list)."""
    kind, optional, check = _plan(hint)

    def one(value: Any) -> Any:
        if value is None and optional:
            return None
        if type(value) is kind and (kind is not float or value - value == 0.0):
            return value
        return check(value)
    return one


@functools.cache
def quick_builder(cls: type) -> Callable[[Any], Any]:
    """`build` for the common case: a dataclass from a JSON object, raising Unsure at anything unusual."""
    plan = tuple((name, *_plan(hint), required) for name, hint, required in fields(cls))

    def quick(data: Any) -> Any:
        if type(data) is not dict:
            raise Unsure
        values = {}
        for name, kind, optional, check, required in plan:
            if name not in data:
                if required:
                    raise Unsure
                continue
            value = data[name]
            if value is None and optional:
                values[name] = None
            elif type(value) is kind and (kind is not float or value - value == 0.0):  # not inf, not nan
                values[name] = value
            else:
                values[name] = check(value)
        return cls(**values)
    return quick


# ------------------------------------------------------------------------------------------------------ writing

@functools.cache
def field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def plain(value: Any) -> Any:
    """dataclasses.asdict's result (dataclasses as dicts, fresh lists and dicts), without its deep copy of
    every number, which made up most of the time to turn 10,000 stages into a dict."""
    kind = type(value)
    if kind in SCALARS or isinstance(value, float):  # numpy's floats too: immutable, a copy changes nothing
        return value
    if isinstance(value, list):
        return [v if type(v) in SCALARS else plain(v) for v in value]
    if isinstance(value, dict):
        return {k: v if type(v) in SCALARS else plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if dataclasses.is_dataclass(kind):
        return {name: plain(getattr(value, name)) for name in field_names(kind)}
    return value


def json_default(value: Any) -> Any:
    """json's `default` hook: a dataclass as the object of its fields (json's C encoder then goes on
    inside it), so that writing needs no copy of the data at all."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: getattr(value, name) for name in field_names(type(value))}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
