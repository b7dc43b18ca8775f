"""Database fixtures for these tests (see tests/functional/db_fixtures.py)."""

from tests.functional.db_fixtures import (  # noqa: F401
    database,
    database_url,
    empty_database_url,
)
