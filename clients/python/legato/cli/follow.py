"""Following a run: its log as it grows and, live, what it waits for.

``run --follow``, ``rerun --follow`` and ``logs -f`` read ``Client.watch_run`` (which
reconnects on its own) on a thread of its own, so that while nothing happens the command
can look again at what the run waits for: a queued run's reason, and each step that may
run but that no agent has taken (no connected agent has its connection or labels, every
one that has is busy, or no agent is connected at all). A line is printed when that
changes, and when a step that waited goes to an agent::

    2026-06-12 09:00:00 CEST - step extract waits: no agent is connected to the control plane …
    2026-06-12 09:00:41 CEST - step extract went to agent eu-1

The server says "waiting for a free agent slot" both when every agent is busy and when
there is none; :func:`explain_waits` tells them apart by listing the agents."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from legato.cli.output import local_time
from legato.client import Client
from legato.errors import RpcError
from legato.v1 import agent_pb2, run_pb2
from legato.v1 import run_service_pb2 as pb

__all__ = [
    "ENDED",
    "StreamStoppedError",
    "Waits",
    "explain_waits",
    "format_log_line",
    "watch",
]

ENDED = frozenset(
    {
        run_pb2.RUN_STATUS_SUCCEEDED,
        run_pb2.RUN_STATUS_FAILED,
        run_pb2.RUN_STATUS_CANCELLED,
        run_pb2.RUN_STATUS_TIMED_OUT,
        run_pb2.RUN_STATUS_SKIPPED,
    }
)
GENERIC_WAIT = "waiting for a free agent slot"
RECHECK_SECONDS = 5.0
"""While something waits and no event comes, how often the run and the agents are read
again."""
TICK_SECONDS = 0.2
"""How often the waiting thread wakes (Ctrl-C is noticed within this)."""


class StreamStoppedError(Exception):
    """The server stopped sending events of a run that has not ended."""

    def __init__(self, run: run_pb2.Run) -> None:
        super().__init__(run.id)
        self.run = run


def format_log_line(line: run_pb2.LogLine) -> str:
    """``TIME ZONE - text`` for Legato's own lines, ``TIME ZONE - [step#attempt] text``
    for a step's output (``[step#attempt stderr]`` for its stderr)."""
    when = local_time(line.time)
    text = line.text.rstrip("\n")
    if line.stream == run_pb2.LOG_STREAM_SYSTEM or not line.step:
        return f"{when} - {text}"
    stderr = " stderr" if line.stream == run_pb2.LOG_STREAM_STDERR else ""
    return f"{when} - [{line.step}#{line.attempt}{stderr}] {text}"


# -- what a run waits for ----------------------------------------------------------------


def explain_waits(
    run: run_pb2.Run,
    steps: list[run_pb2.StepRun],
    agents: Callable[[], list[agent_pb2.Agent]],
    *,
    include_run: bool = True,
    server: str = "HOST:PORT",
) -> dict[str, str]:
    """What the run and its steps wait for: ``""`` (the run, with ``include_run``) or a
    step's name → why, for a queued run and for the steps that may run but that no agent
    has taken yet. ``agents`` lists the connected agents; it is called only when the
    server's reason could mean that there are none; ``server`` is the address to tell a
    new agent."""
    found: dict[str, str] = {}
    if include_run and run.status == run_pb2.RUN_STATUS_QUEUED and run.waiting_reason:
        found[""] = run.waiting_reason
    waiting = [s for s in steps if s.status == run_pb2.STEP_STATUS_READY and s.kind != "trigger"]
    if not waiting:
        return found
    nobody = ""
    if any((s.waiting_reason or GENERIC_WAIT) == GENERIC_WAIT for s in waiting):
        nobody = _no_agent(agents, server)
    for step in waiting:
        reason = step.waiting_reason or GENERIC_WAIT
        found[step.name] = nobody if nobody and reason == GENERIC_WAIT else reason
    return found


def _no_agent(agents: Callable[[], list[agent_pb2.Agent]], server: str) -> str:
    """Why no agent can take a step although the server only says it waits for a slot:
    none is connected, or every one is draining; ``""`` when some agent takes steps."""
    try:
        found = agents()
    except RpcError:
        return ""
    if any(a.state == agent_pb2.AGENT_STATE_CONNECTED for a in found):
        return ""
    if found:
        names = ", ".join(a.name for a in found)
        return (
            f"waiting: every connected agent is draining ({names}) and takes no new steps; "
            f"start another one with `legato agent --server {server}`"
        )
    return (
        "waiting: no agent is connected to the control plane; start one with "
        f"`legato agent --server {server}`, enrolled with `legato agents token create` "
        "(see docs/agent.md)"
    )


@dataclass
class Waits:
    """What was last said about a run's waits; :meth:`update` returns the lines to print
    when that changes."""

    said: dict[str, str] = field(default_factory=dict)

    def update(self, waits: dict[str, str], steps: list[run_pb2.StepRun]) -> list[str]:
        lines: list[str] = []
        now = _now()
        for name in [n for n in self.said if n not in waits]:
            del self.said[name]
            step = next((s for s in steps if s.name == name), None)
            if step is not None and step.agent:
                lines.append(f"{now} - step {name} went to agent {step.agent}")
        by_reason: dict[str, list[str]] = {}
        for name, why in waits.items():
            if self.said.get(name) != why:
                self.said[name] = why
                by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():
            if "" in names:
                lines.append(f"{now} - the run is queued, {_waits('', why)}")
            named = [n for n in names if n]
            if named:
                label = "step" if len(named) == 1 else "steps"
                lines.append(f"{now} - {label} {', '.join(named)} {_waits(label, why)}")
        return lines


def _waits(subject: str, reason: str) -> str:
    """``waits for a free agent slot`` / ``waits: no connected agent has ...``"""
    verb = "wait" if subject == "steps" else "waits"
    if reason.startswith("waiting for "):
        return f"{verb} for {reason.removeprefix('waiting for ')}"
    return f"{verb}: {reason.removeprefix('waiting: ')}"


def _now() -> str:
    from google.protobuf import timestamp_pb2

    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return local_time(stamp)


# -- watching ----------------------------------------------------------------------------


def watch(
    client: Client,
    run_id: str,
    *,
    after_seq: int,
    on_line: Callable[[run_pb2.LogLine], None] | None,
    on_wait: Callable[[str], None] | None = None,
) -> run_pb2.Run:
    """Hand each new log line to ``on_line`` (and, with ``on_wait``, each change of what
    the run waits for) until the run ends; the ended run. Raises StreamStoppedError when the
    server stops sending events of a run that has not ended."""
    last: run_pb2.Run | None = None
    steps: dict[str, run_pb2.StepRun] = {}
    seen = after_seq
    waits = Waits()
    agents_read: tuple[float, list[agent_pb2.Agent]] | None = None

    def connected_agents() -> list[agent_pb2.Agent]:
        nonlocal agents_read
        if agents_read is None or time.monotonic() - agents_read[0] > RECHECK_SECONDS:
            agents_read = (time.monotonic(), list(client.list_agents()))
        return agents_read[1]

    def report() -> None:
        if on_wait is None or last is None or last.status in ENDED:
            return
        ordered = list(steps.values())
        # A queued run's reason is in its log ("Run queued: ..."), when the log is shown.
        found = explain_waits(
            last, ordered, connected_agents, include_run=on_line is None, server=client.target
        )
        for line in waits.update(found, ordered):
            on_wait(line)

    events = _pumped(client, run_id, include_logs=on_line is not None, after_seq=after_seq)
    quiet_since = time.monotonic()
    for event in events:
        if event is None:  # a tick: nothing arrived
            if waits.said and time.monotonic() - quiet_since >= RECHECK_SECONDS:
                quiet_since = time.monotonic()
                try:
                    last = client.get_run(run_id)
                except RpcError:  # the watch reconnects by itself; look again later
                    continue
                steps = {s.name: s for s in last.steps}
                report()
            continue
        quiet_since = time.monotonic()
        kind = event.WhichOneof("event")
        if kind == "run":
            last = event.run
            if event.run.steps:
                steps = {s.name: s for s in event.run.steps}
            report()
        elif kind == "step":
            steps[event.step.name] = event.step
            report()
        elif kind == "log" and on_line is not None and event.log.seq > seen:
            seen = event.log.seq
            on_line(event.log)
    if last is None or last.status not in ENDED:
        last = client.get_run(run_id)
    if last.status not in ENDED:
        raise StreamStoppedError(last)
    return last


def _pumped(
    client: Client, run_id: str, *, include_logs: bool, after_seq: int
) -> Iterator[pb.WatchRunResponse | None]:
    """The run's events, read on a thread; None every TICK_SECONDS that none arrived.
    The thread ends with the call: when the run ends, or when the client is closed."""
    events: queue.Queue[tuple[str, object]] = queue.Queue()

    def pump() -> None:
        try:
            for event in client.watch_run(run_id, include_logs=include_logs, after_seq=after_seq):
                events.put(("event", event))
        except BaseException as error:
            events.put(("error", error))
        else:
            events.put(("end", None))

    threading.Thread(target=pump, name=f"watch-{run_id}", daemon=True).start()
    while True:
        try:
            kind, item = events.get(timeout=TICK_SECONDS)
        except queue.Empty:
            yield None
            continue
        if kind == "event":
            assert isinstance(item, pb.WatchRunResponse)
            yield item
        elif kind == "error":
            assert isinstance(item, BaseException)
            raise item
        else:
            return
