"""Alembic revisions of portfleet's store (run in-process by ``collector.store.database``)."""
