"""Database fixtures for these tests (see tests/functional/db_fixtures.py)."""

from tests.functional.db_fixtures import database, database_url  # noqa: F401
