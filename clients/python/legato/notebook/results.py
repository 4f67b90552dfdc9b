"""What running a step (or a whole pipeline) from a notebook returns: a
:class:`StepResult` per step and a :class:`TestResult` for :meth:`Pipeline.test`."""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

__all__ = ["StepResult", "TestResult"]


@dataclass(frozen=True)
class StepResult:
    """One step's run: ``status`` is ``succeeded``, ``failed``, ``cancelled`` or (in
    :meth:`Pipeline.test`) ``skipped``, ``upstream_failed`` or ``given`` (its output came
    from ``inputs``). ``data`` is the output table as a pandas DataFrame (None when the
    step has none), ``values`` its values, ``logs`` its output lines in order,
    ``duration`` seconds, ``error`` the message an agent would report (empty when it
    succeeded), ``failure_kind`` ``error``, ``timeout`` or ``memory`` for a failure.
    ``run_id`` is the test run's id on the server for a remote run (``on=``)."""

    step: str
    status: str
    data: pandas.DataFrame | None = field(default=None, repr=False)
    values: dict[str, Any] = field(default_factory=dict)
    records_in: int | None = None
    records_out: int | None = None
    logs: list[str] = field(default_factory=list, repr=False)
    duration: float = 0.0
    error: str = ""
    failure_kind: str = ""
    run_id: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status in ("succeeded", "given")

    def summary(self) -> str:
        """One line: ``transform: succeeded (127 → 98) in 0.41 s``."""
        counts = ""
        if self.records_in is not None or self.records_out is not None:
            shown_in = "-" if self.records_in is None else str(self.records_in)
            shown_out = "-" if self.records_out is None else str(self.records_out)
            counts = f" ({shown_in} → {shown_out})"
        took = f" in {self.duration:.2f} s" if self.status not in ("given", "skipped") else ""
        why = f": {self.error}" if self.error else ""
        return f"{self.step}: {self.status}{counts}{took}{why}"

    def __repr__(self) -> str:
        rows = "" if self.data is None else f", data={len(self.data)} rows"
        return f"StepResult({self.summary()!r}{rows}, values={self.values!r})"

    def _repr_html_(self) -> str:
        parts = [f"<p><b>{html.escape(self.summary())}</b></p>"]
        if self.values:
            parts.append(f"<p>values: <code>{html.escape(repr(self.values))}</code></p>")
        if self.data is not None:
            parts.append(self.data.head(20).to_html())
        return "".join(parts)


@dataclass(frozen=True)
class TestResult(Mapping[str, StepResult]):
    """Every step of a :meth:`Pipeline.test`, in the order they were decided: a mapping
    of step name → :class:`StepResult`. ``status`` is the run's outcome as the control
    plane decides it (``succeeded``, ``failed``, ``cancelled``)."""

    __test__ = False  # not a pytest test class

    pipeline: str
    status: str
    steps: dict[str, StepResult]

    def __getitem__(self, name: str) -> StepResult:
        try:
            return self.steps[name]
        except KeyError:
            known = ", ".join(repr(n) for n in self.steps)
            raise KeyError(f"no step {name!r} in this test; its steps: {known}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def summary(self) -> str:
        lines = [f"pipeline {self.pipeline!r}: {self.status}"]
        lines.extend(f"  {result.summary()}" for result in self.steps.values())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>"
            f"<td>{html.escape(r.step)}</td><td>{html.escape(r.status)}</td>"
            f"<td>{'' if r.records_in is None else r.records_in}</td>"
            f"<td>{'' if r.records_out is None else r.records_out}</td>"
            f"<td>{r.duration:.2f}</td><td>{html.escape(r.error)}</td>"
            "</tr>"
            for r in self.steps.values()
        )
        return (
            f"<p><b>pipeline {html.escape(self.pipeline)}: {html.escape(self.status)}</b></p>"
            "<table><tr><th>step</th><th>status</th><th>in</th><th>out</th><th>s</th>"
            f"<th>error</th></tr>{rows}</table>"
        )
