"""The agent's version, from the installed package metadata (pbr).

pbr derives it from git tags at build time and records it in the package
metadata, so an installed agent knows its version without git. The three
``*_string`` functions are also the "version object" oslo.reports expects
(Guru Meditation Reports print them).
"""

from __future__ import annotations

import functools

import pbr.version

PACKAGE = "compute-agent"
VENDOR = "compute-agent developers"
PRODUCT = "compute-agent"


@functools.cache
def _info() -> pbr.version.VersionInfo:
    return pbr.version.VersionInfo(PACKAGE)


def version_string() -> str:
    """Release version, e.g. ``1.2.0`` (or ``1.2.1.dev3`` between tags)."""
    return _info().release_string()


def vendor_string() -> str:
    return VENDOR


def product_string() -> str:
    return PRODUCT


def version_string_with_package() -> str:
    """What operators quote in bug reports: product and exact version."""
    return f"{PRODUCT} {version_string()}"
