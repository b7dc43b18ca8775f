"""Fixtures of the console tests: the database fixtures (three backends)."""

from tests.functional.db_fixtures import database, database_url  # noqa: F401
