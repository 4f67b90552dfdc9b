"""Persistence: tables, repositories and migrations (SQLAlchemy 2 async)."""
