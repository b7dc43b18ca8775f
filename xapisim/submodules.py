"""Importing every module of a package once, for packages whose modules
register themselves on import (message handlers, HTTP routes)."""

from __future__ import annotations

import functools
import importlib
import pkgutil


@functools.cache
def import_all(package: str) -> None:
    """Import every direct submodule of ``package`` (only the first call
    does anything)."""
    pkg = importlib.import_module(package)
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"{package}.{mod.name}")
