"""Dump the API surface of the real ``tensorrt`` module as JSON (run inside the isolated subprocess).

Usage: python tests/tensorrt_api.py api.json, with the real bindings importable as ``tensorrt``
(tests/tensorrt_bindings.py sets that up). Standard library only: it runs in the bindings' own
interpreter environment and must not import csrinfer.

For every public name of ``tensorrt`` (and, one level down, of each class) it records:

- enums: ``{"kind": "enum", "members": {NAME: int value}}``;
- classes: ``{"kind": "class", "attrs": {...}, "init": [signature, ...]}``;
- properties: ``{"kind": "property", "writable": bool}``;
- functions and methods: ``{"kind": "function", "signatures": [...]}`` where a signature is
  ``{"params": [{"name", "default": bool}], "varargs": bool}`` parsed from pybind11's docstring
  (one per overload), ``self`` left out for methods;
- enum-typed constants such as ``tensorrt.float16``: ``{"kind": "value", "type": "DataType", "value": int}``.
"""

from __future__ import annotations

import inspect
import json
import re
import sys


def split_top(text: str) -> list[str]:
    """Split at commas that are not inside (), [], {} or <>."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def param_list(text: str) -> tuple[list[dict], bool]:
    params, varargs = [], False
    for part in split_top(text):
        name = part.split(":", 1)[0].split("=", 1)[0].strip()
        if name.startswith("*"):
            varargs = True
            continue
        params.append({"name": name, "default": "=" in part})
    return params, varargs


def signatures(name: str, doc: str | None, is_method: bool) -> list[dict]:
    """pybind11 writes 'name(a: T, b: T = x) -> R' first, or 'Overloaded function.' and 'N. name(...)'."""
    if not doc:
        return []
    found = []
    for line in doc.splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*(?:->.*)?$", line)
        if not m:
            continue
        params, varargs = param_list(m.group(1))
        if varargs and not params:  # the '(*args, **kwargs)' header of an overloaded function
            continue
        if is_method and params and params[0]["name"] == "self":
            params = params[1:]
        found.append({"params": params, "varargs": varargs})
    return found


def python_signature(fn, is_method: bool) -> list[dict]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    params, varargs = [], False
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            varargs = True
            continue
        params.append({"name": p.name, "default": p.default is not p.empty})
    if is_method and params and params[0]["name"] in ("self", "cls"):
        params = params[1:]
    return [{"params": params, "varargs": varargs}]


def is_enum(obj) -> bool:
    return isinstance(obj, type) and isinstance(getattr(obj, "__members__", None), dict)


def enum_entry(cls) -> dict:
    return {"kind": "enum", "members": {k: int(v) for k, v in cls.__members__.items()}}


def callable_entry(name: str, fn, is_method: bool) -> dict:
    sigs = signatures(name, getattr(fn, "__doc__", None), is_method)
    if not sigs:  # a Python-level function (tensorrt/__init__.py)
        sigs = python_signature(fn, is_method)
    return {"kind": "function", "signatures": sigs}


def class_entry(cls) -> dict:
    attrs = {}
    for klass in reversed(cls.__mro__):  # subclasses override their bases
        if klass is object or klass.__name__.startswith("pybind11"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, property):
                attrs[name] = {"kind": "property", "writable": value.fset is not None}
            elif is_enum(value):
                attrs[name] = enum_entry(value)
            elif isinstance(value, staticmethod):
                attrs[name] = callable_entry(name, value.__func__, False)
            elif isinstance(value, classmethod):  # called on the class: cls is bound like self
                attrs[name] = callable_entry(name, value.__func__, True)
            elif callable(value):
                attrs[name] = callable_entry(name, value, True)
            elif isinstance(type(value), type) and is_enum(type(value)):
                attrs[name] = {"kind": "value", "type": type(value).__name__, "value": int(value)}
    init = vars(cls).get("__init__")
    entry = {"kind": "class", "attrs": attrs, "bases": [b.__name__ for b in cls.__mro__[1:-1]]}
    if init is not None:
        entry["init"] = callable_entry("__init__", init, True)["signatures"]
    return entry


def dump(module) -> dict:
    names = {}
    for name in dir(module):
        if name.startswith("_") and name != "__version__":
            continue
        value = getattr(module, name)
        if name == "__version__":
            names[name] = {"kind": "value", "type": "str", "value": value}
        elif inspect.ismodule(value):
            continue
        elif is_enum(value):
            names[name] = enum_entry(value)
        elif isinstance(value, type):
            names[name] = class_entry(value)
        elif callable(value):
            names[name] = callable_entry(name, value, False)
        elif is_enum(type(value)):
            names[name] = {"kind": "value", "type": type(value).__name__, "value": int(value)}
    return names


def main() -> None:
    import tensorrt
    import tensorrt.plugin as trtp

    api = {"tensorrt": dump(tensorrt), "tensorrt.plugin": dump(trtp)}
    with open(sys.argv[1], "w") as f:  # not stdout: importing tensorrt.plugin logs a warning there
        json.dump(api, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
