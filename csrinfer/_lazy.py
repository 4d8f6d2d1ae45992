"""Lazy package attributes (PEP 562), so ``import csrinfer`` does not import torch."""

from __future__ import annotations

import importlib


def lazy_getattr(package: str, table: dict[str, str]):
    """A module ``__getattr__`` that imports ``table[name]`` (a module path) on first access."""

    def __getattr__(name: str):
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__
