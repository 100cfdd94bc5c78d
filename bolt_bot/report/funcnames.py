"""A profiled function's name as a reader writes it: `str.title`, `len`, `pipeline/parse.py:40 _clean_city`."""

from __future__ import annotations

import re

_FUNCTION = re.compile(r"(?s)(?P<file>.*):(?P<line>\d+)\((?P<name>.*)\)")
_BUILTIN = re.compile(r"<built-in method (?:builtins\.)?(?P<name>[\w.]+)>")
_METHOD = re.compile(r"<method '(?P<name>\w+)' of '(?P<type>[\w.]+)' objects>")
_BOUND = re.compile(r"<built-in method (?P<name>\w+) of (?P<type>[\w.]+) object(?: at 0x[0-9a-fA-F]+)?>")


def builtin_name(name: str) -> str:
    """A C function as Python code writes it: `len`, `str.title`, `re.Pattern.sub`, not cProfile's label
    (`<built-in method builtins.len>`, `<method 'title' of 'str' objects>`); other names unchanged."""
    for pattern in (_BUILTIN, _METHOD, _BOUND):
        match = pattern.fullmatch(name)
        if match:
            owner = match.groupdict().get("type")
            return f"{owner}.{match['name']}" if owner else match["name"]
    return name


def format_function(key: str) -> str:
    """A profile row's function ("file:line(name)", cProfile's key) as a reader wants it: built-ins as Python
    writes them (`str.title`), code as `path.py:12 name`, and code generated at run time (no file, e.g. by
    attrs or cattrs) said to be so, rather than ":1(name)". Text that is not such a key is returned as it is,
    so a name formatted once stays the same when formatted again."""
    match = _FUNCTION.fullmatch(key or "")
    if not match:
        return key
    file, line, name = match["file"], match["line"], match["name"]
    if file == "~":
        return builtin_name(name)
    if not file:
        return f"{name} (generated code, no source file)"
    return f"{file}:{line} {name}"
