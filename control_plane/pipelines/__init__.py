"""Pipelines as users write them: the registry of specs and their versions (history, diff,
rollback, archive) and the expression language their conditions and templates use."""
