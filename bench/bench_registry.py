"""Registry benchmark: ApplyPipeline and ListPipelines through the real gRPC server.

    .venv/bin/python bench/bench_registry.py [--backend sqlite|postgres] [--pipelines 300]

Measures, over loopback with the SDK: apply of a new pipeline (version 1), apply of a
changed spec (version N+1), apply of an unchanged spec (hash match, no write), and
concurrent applies from 8 client threads; then paging through every pipeline. Beside each
wall time, the control plane's CPU per call: the process's CPU less that of the client
threads (the server runs in this process, on its own thread). Ends with the issue 11
figures against their targets: a new pipeline's apply p50 ≤ 3 ms, and 8 writers adding
versions to one pipeline ≥ 400 versions/s. PostgreSQL uses a throwaway database on
LEGATO_TEST_POSTGRES_URL (default: local postgres)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from harness import database

from legato.testing import LocalControlPlane
from legato.v1 import spec_pb2
from observability.logsetup import configure_logging

ADMIN = os.environ.get("LEGATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def spec(name: str, variant: int = 0) -> spec_pb2.PipelineSpec:
    return spec_pb2.PipelineSpec(
        name=name,
        schedule=spec_pb2.Schedule(cron="0 2 * * *", timezone="Europe/Berlin"),
        steps=[
            spec_pb2.Step(
                name="extract", query=spec_pb2.QueryStep(connection="wh", sql="SELECT 1")
            ),
            spec_pb2.Step(
                name="clean",
                needs=["extract"],
                transform=spec_pb2.TransformStep(code=f"result = data.head({variant})"),
            ),
            spec_pb2.Step(
                name="load",
                needs=["clean"],
                export=spec_pb2.ExportStep(table=spec_pb2.TableExport(connection="wh", table="t")),
            ),
        ],
    )


APPLY_P50_TARGET_MS = 3.0
WRITERS_TARGET_PER_S = 400.0


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class ServerCpu:
    """CPU of this process less that of the client threads that ran the calls: the
    control plane's (its event loop, database driver threads, gRPC's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = 0.0
        self._clients = 0.0

    def start(self) -> None:
        self._start = _process_cpu()
        self._clients = 0.0

    def client(self, seconds: float) -> None:
        """Add the CPU a client thread spent on calls (``time.thread_time`` deltas)."""
        with self._lock:
            self._clients += seconds

    def per_call_ms(self, calls: int) -> float:
        return (_process_cpu() - self._start - self._clients) * 1000 / calls


def _process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def report(label: str, samples: list[float], cpu_ms: float | None = None) -> float:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    rate = 1000 / statistics.mean(ordered)
    cpu = f"  server CPU {cpu_ms:5.2f} ms/call" if cpu_ms is not None else ""
    print(
        f"  {label:<34} n={len(ordered):<5} p50={p50:6.2f} ms  p95={p95:6.2f} ms"
        f"  ~{rate:6.0f}/s{cpu}"
    )
    return p50


def target(label: str, value: float, goal: float, unit: str, *, at_most: bool) -> None:
    met = value <= goal if at_most else value >= goal
    sign = "≤" if at_most else "≥"
    verdict = "met" if met else "MISSED"
    print(f"  target {label:<40} {value:7.1f} {unit} ({sign} {goal:g}: {verdict})")


def run(backend: str, count: int) -> None:
    with database(backend) as url, LocalControlPlane(db=url) as plane:
        client = plane.client()
        cpu = ServerCpu()
        print(f"{backend}: {count} pipelines")

        def applies(variant: int) -> tuple[list[float], float]:
            samples = []
            cpu.start()
            own = time.thread_time()
            for i in range(count):
                request = spec(f"p{i:04d}", variant)
                samples.append(timed(partial(client.apply_pipeline, request)))
            cpu.client(time.thread_time() - own)
            return samples, cpu.per_call_ms(count)

        apply_p50 = report("apply new pipeline (v1)", *applies(0))
        report("apply changed spec (v2)", *applies(1))
        report("apply unchanged spec", *applies(1))

        def versions(worker: int) -> None:
            own = plane.client()
            started = time.thread_time()
            for n in range(count // 8):
                own.apply_pipeline(spec("shared", worker * 10_000 + n + 2))
            cpu.client(time.thread_time() - started)

        made = 8 * (count // 8)
        cpu.start()
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(versions, range(8)))
        elapsed = time.perf_counter() - start
        rate = made / elapsed
        label = "8 threads, one pipeline, new versions"
        print(
            f"  {label:<34} n={made:<5} {rate:6.0f} versions/s"
            f"  server CPU {cpu.per_call_ms(made):5.2f} ms/call"
        )
        latest = client.get_pipeline("shared").latest_version
        assert latest == made, (latest, made)
        samples = [timed(lambda: list(client.list_pipelines(page_size=100))) for _ in range(10)]
        report(f"list all {count + 1} pipelines (pages of 100)", samples)
        target("apply of a new pipeline, p50", apply_p50, APPLY_P50_TARGET_MS, "ms", at_most=True)
        target("8 writers on one pipeline", rate, WRITERS_TARGET_PER_S, "versions/s", at_most=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pipelines", type=int, default=300)
    args = parser.parse_args()
    configure_logging("console", "warning")
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        run(backend, args.pipelines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
