"""Execution-plane benchmarks (issue targets in brackets):

  W1  one run of 40 chained no-op steps: step-to-step latency p50/p95, the time from a
      step's end to the next step's start as the agent saw them [p50 <= 5 ms SQLite,
      <= 10 ms PostgreSQL], and the run's total time
  W2  40 parallel no-op steps and a join: total time
  W3  one-step runs per second, many runs in flight [>= 100 runs/s]
  W4  sustained no-op steps/s with 4 agents on PostgreSQL [>= 1,000 steps/s]; with
      --isolation pooled its steps run in pooled workers (issue 11: >= 300 steps/s forked,
      >= 1,500 pooled)

    .venv/bin/python bench/bench_execution.py [--only W1,W3] [--backend sqlite|postgres|both]
    .venv/bin/python bench/bench_execution.py --quick   # every figure, fewer rounds: < 1 min

`--quick` is what `.ci/run` runs after the tests: it prints the figures in every CI log (so a
regression shows where it landed) and asserts nothing about time; a run that fails fails it.

The control plane (`legato server`) and the agents are separate processes, so the CPU of
each is read from /proc apart from the benchmark client's; every step runs in a child
process of its agent (a child forked ahead of need from the agent's warm fork server)."""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from harness import BenchPlane, CpuMeter, cluster, percentile, wait_run

from legato.v1 import spec_pb2

NOOP = spec_pb2.TransformStep(code="result = None")


def chain(name: str, length: int) -> spec_pb2.PipelineSpec:
    """``length`` no-op steps, each needing the one before; names sort in chain order."""
    width = max(2, len(str(length - 1)))
    names = [f"s{i:0{width}d}" for i in range(length)]
    steps = [spec_pb2.Step(name=names[0], transform=NOOP)]
    for before, step in itertools.pairwise(names):
        steps.append(spec_pb2.Step(name=step, needs=[before], transform=NOOP))
    return spec_pb2.PipelineSpec(name=name, steps=steps)


def fan(name: str, width: int) -> spec_pb2.PipelineSpec:
    steps = [spec_pb2.Step(name=f"p{i:02d}", transform=NOOP) for i in range(width)]
    steps.append(spec_pb2.Step(name="join", needs=[s.name for s in steps], transform=NOOP))
    return spec_pb2.PipelineSpec(name=name, steps=steps)


def w1(plane: BenchPlane, rounds: int = 3) -> None:
    client = plane.client()
    client.apply_pipeline(chain("w1", 40))
    gaps: list[float] = []
    totals: list[float] = []
    for _ in range(rounds):
        run = wait_run(plane, client.trigger_run("w1").run.id)
        assert run.status == 3, run
        steps = sorted(run.steps, key=lambda s: s.name)
        for prev, nxt in itertools.pairwise(steps):
            gap = nxt.start_time.ToDatetime() - prev.end_time.ToDatetime()
            gaps.append(gap.total_seconds() * 1000)
        totals.append((run.end_time.ToDatetime() - run.start_time.ToDatetime()).total_seconds())
    print(
        f"  W1 40-step chain: step-to-step p50 {percentile(gaps, 0.5):.1f} ms, "
        f"p95 {percentile(gaps, 0.95):.1f} ms (n={len(gaps)}); "
        f"run total {statistics.median(totals):.2f} s"
    )


def w2(plane: BenchPlane, rounds: int = 3) -> None:
    client = plane.client()
    client.apply_pipeline(fan("w2", 40))
    totals = []
    for _ in range(rounds):
        run = wait_run(plane, client.trigger_run("w2").run.id)
        assert run.status == 3, run
        totals.append((run.end_time.ToDatetime() - run.start_time.ToDatetime()).total_seconds())
    print(
        f"  W2 40 parallel + join: run total {statistics.median(totals):.2f} s (median of {rounds})"
    )


def w3(plane: BenchPlane, runs: int = 400) -> None:
    client = plane.client()
    client.apply_pipeline(
        spec_pb2.PipelineSpec(name="w3", steps=[spec_pb2.Step(name="only", transform=NOOP)])
    )
    meter = CpuMeter(plane.agent_pids, plane.server_pid)
    meter.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: client.trigger_run("w3").run.id, range(runs)))
    triggered = time.perf_counter() - started
    for run_id in ids:
        assert wait_run(plane, run_id).status == 3
    elapsed = time.perf_counter() - started
    meter.stop()
    print(
        f"  W3 one-step runs: {runs} runs in {elapsed:.2f} s = {runs / elapsed:.0f} runs/s "
        f"(triggering alone {runs / triggered:.0f} runs/s); CPU per run: control plane "
        f"{1000 * meter.server / runs:.1f} ms, agent + step process "
        f"{1000 * meter.agents / runs:.1f} ms, benchmark client {1000 * meter.own / runs:.1f} ms"
    )


def w4(plane: BenchPlane, runs: int = 50, width: int = 40, isolation: str = "process") -> None:
    client = plane.client()
    spec = fan("w4", width)
    if isolation == "pooled":  # left unset otherwise: also runs against older agents
        for step in spec.steps:
            step.isolation = spec_pb2.ISOLATION_POOLED
    client.apply_pipeline(spec)
    meter = CpuMeter(plane.agent_pids, plane.server_pid)
    meter.start()
    started = time.perf_counter()
    ids = [client.trigger_run("w4").run.id for _ in range(runs)]
    for run_id in ids:
        assert wait_run(plane, run_id, timeout=600).status == 3
    elapsed = time.perf_counter() - started
    meter.stop()
    steps = runs * (width + 1)
    print(
        f"  W4 {steps} no-op steps ({isolation}) on 4 agents: {elapsed:.2f} s = "
        f"{steps / elapsed:.0f} steps/s; "
        f"CPU per step: control plane {1000 * meter.server / steps:.1f} ms, "
        f"agents + step processes {1000 * meter.agents / steps:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="W1,W2,W3,W4")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--quick", action="store_true", help="one round of W1/W2, 100 W3 runs, 10 W4 runs"
    )
    parser.add_argument(
        "--isolation",
        choices=["process", "pooled"],
        default="process",
        help="W4's steps: a fresh process per attempt, or pooled workers",
    )
    args = parser.parse_args()
    rounds, w3_runs, w4_runs = (1, 100, 10) if args.quick else (3, 400, 50)
    only = {w.strip().upper() for w in args.only.split(",")}
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if only & {"W1", "W2", "W3"}:
            print(f"{backend}, 1 agent with 8 slots:")
            with cluster(backend, agents=1, slots=8) as plane:
                if "W1" in only:
                    w1(plane, rounds)
                if "W2" in only:
                    w2(plane, rounds)
                if "W3" in only:
                    w3(plane, w3_runs)
        if "W4" in only and backend == "postgres":
            print(f"{backend}, 4 agents with 8 slots each:")
            with cluster(backend, agents=4, slots=8) as plane:
                w4(plane, w4_runs, isolation=args.isolation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
