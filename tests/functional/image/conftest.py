"""Fixtures of the image-source tests: the real Glance (one per session)."""

from tests.functional.glance_fixture import glance  # noqa: F401  (a fixture)
