"""Persistent state of the agent: SQLAlchemy models, Alembic migrations and
the small query API (``compute_agent.db.api.Database``) the manager uses."""
