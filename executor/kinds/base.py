"""What a step kind is and what it works with.

A kind is an object with a ``name`` and ``run(config, ctx) -> StepResult``. It runs inside
the attempt's child process: ``config`` is the kind's proto message as a dict (field names
as in the proto), ``ctx`` gives the step's identity, parameters and upstream outputs. A kind
reports a failure the user should read by raising :class:`StepError` with a one-line
message; anything else it raises is reported as an internal error of the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from executor.kinds.tables import read_table, table_rows
from legato.spec.connections import connection_variable

__all__ = ["StepContext", "StepError", "StepKind", "StepResult", "Upstream"]


class StepError(Exception):
    """A failure of the step, with the one-line message the user sees as the attempt's
    error. ``kind`` is ``memory`` when the step ran out of memory, else ``error``."""

    def __init__(self, message: str, *, kind: Literal["error", "memory"] = "error") -> None:
        super().__init__(message)
        self.message = message
        self.kind: Literal["error", "memory"] = kind


class Upstream:
    """One upstream step's output: its values and, when it produced one, its table
    (an Arrow IPC file, read when first asked for)."""

    def __init__(self, step: str, values: dict[str, Any], table_path: Path | None) -> None:
        self.step = step
        self.values = values
        self.table_path = table_path
        self._frame: pd.DataFrame | None = None

    @property
    def has_table(self) -> bool:
        return self.table_path is not None

    def rows(self) -> int | None:
        """Rows of the table, from the file's metadata (no conversion to pandas)."""
        return None if self.table_path is None else table_rows(self.table_path)

    def arrow(self) -> pa.Table | None:
        return None if self.table_path is None else read_table(self.table_path)

    def frame(self) -> pd.DataFrame | None:
        """The table as a pandas DataFrame, converted once."""
        if self._frame is None and self.table_path is not None:
            self._frame = read_table(self.table_path).to_pandas()
        return self._frame

    def value(self) -> pd.DataFrame | dict[str, Any]:
        """What user code receives for this upstream: its table, else its values."""
        frame = self.frame()
        return self.values if frame is None else frame


@dataclass(frozen=True)
class StepContext:
    pipeline: str
    step: str
    run_id: str
    attempt: int
    params: dict[str, Any]
    upstreams: tuple[Upstream, ...]
    workdir: Path
    connections: Mapping[str, str] = field(default_factory=dict)
    """The named connections and secrets this step uses (name → URL or secret value),
    as configured on the agent: only the ones the step names are handed to it."""
    resolved: Mapping[str, Any] = field(default_factory=dict)
    """Values the control plane evaluated for this step from the run's params and its
    upstream results: ``parameters`` (a query's bound values by name) and ``text`` (a
    Slack export's message, its template filled in)."""

    def connection(self, name: str) -> str:
        """The URL or secret configured on this agent under ``name``."""
        try:
            return self.connections[name]
        except KeyError:
            raise StepError(
                f"this agent has no connection {name!r}; configure it in the agent's "
                f"--connections file or as {connection_variable(name)}"
            ) from None

    @property
    def idempotency_key(self) -> str:
        """``<run>:<step>:<attempt>``: names this attempt's writes for receivers and logs."""
        return f"{self.run_id}:{self.step}:{self.attempt}"

    def upstream(self, name: str) -> Upstream:
        for upstream in self.upstreams:
            if upstream.step == name:
                return upstream
        known = ", ".join(repr(u.step) for u in self.upstreams) or "none"
        raise StepError(f"step {self.step!r} has no upstream {name!r} (its upstreams: {known})")

    def records_in(self) -> int | None:
        """Total rows of the upstream tables; None when no upstream has a table."""
        counts = [n for n in (u.rows() for u in self.upstreams) if n is not None]
        return sum(counts) if counts else None

    def single_table(self) -> pd.DataFrame | None:
        """The upstream table when exactly one upstream has a table, else None."""
        with_tables = [u for u in self.upstreams if u.has_table]
        return with_tables[0].frame() if len(with_tables) == 1 else None

    def inputs(self) -> dict[str, pd.DataFrame | dict[str, Any]]:
        """Upstream name → its table as a DataFrame, or its values when it has no table."""
        return {u.step: u.value() for u in self.upstreams}


@dataclass(frozen=True)
class StepResult:
    """What a step produced: a table (or none) and small JSON values."""

    table: pa.Table | None = None
    values: dict[str, Any] = field(default_factory=dict)
    records_in: int | None = None
    written: int | None = None
    """Records a step wrote or delivered without producing a table: rows an export
    inserted, items a webhook took, rows a statement changed."""

    @property
    def records_out(self) -> int | None:
        return self.written if self.table is None else self.table.num_rows


class StepKind(Protocol):
    @property
    def name(self) -> str: ...

    def run(self, config: dict[str, Any], ctx: StepContext) -> StepResult: ...
