"""Relational state: one SQLAlchemy MetaData for every table, one engine factory."""

from vivified.core.db._engine import create_engine_for, metadata, sqlite_url

__all__ = ["create_engine_for", "metadata", "sqlite_url"]
