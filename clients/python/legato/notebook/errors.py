"""The notebook API's exceptions::

    Exception
    ├── NotebookError (ValueError)   a call that cannot be made as asked: an unknown step,
    │                                a missing input or connection, params the spec refuses
    └── StepFailed                   the step ran and did not succeed (the agent's message)

Calls that reach a server (``load("name")``, ``run(on=...)``) raise ``legato.RpcError``
and its subclasses when the server refuses them."""

from __future__ import annotations

from legato.notebook.results import StepResult

__all__ = ["NotebookError", "StepFailed"]


class NotebookError(ValueError):
    """A notebook call that cannot be made as asked; the message names what and what to
    do."""


class StepFailed(Exception):  # noqa: N818 - reads as what happened, like RunFailed
    """A step that did not succeed when run from a notebook. Its message is the one an
    agent reports (``step 'load' exceeded its timeout of 2s (timeout); ...``);
    ``result`` holds the logs, the failure kind and the duration."""

    def __init__(self, result: StepResult) -> None:
        super().__init__(result.error or f"step {result.step!r} {result.status}")
        self.result = result
        self.failure_kind = result.failure_kind
