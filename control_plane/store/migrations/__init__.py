"""Alembic migrations of the Legato store (applied by ``legato db upgrade`` and at start-up)."""
