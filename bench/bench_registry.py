"""Registry benchmark: ApplyPipeline and ListPipelines through the real gRPC server.

    .venv/bin/python bench/bench_registry.py [--backend sqlite|postgres] [--pipelines 300]

Measures, over loopback with the SDK: apply of a new pipeline (version 1), apply of a
changed spec (version N+1), apply of an unchanged spec (hash match, no write), and
concurrent applies from 8 client threads; then paging through every pipeline. PostgreSQL
uses a throwaway database on LEGATO_TEST_POSTGRES_URL (default: local postgres)."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
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


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def report(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    rate = 1000 / statistics.mean(ordered)
    print(f"  {label:<34} n={len(ordered):<5} p50={p50:6.2f} ms  p95={p95:6.2f} ms  ~{rate:6.0f}/s")


def run(backend: str, count: int) -> None:
    with database(backend) as url, LocalControlPlane(db=url) as plane:
        client = plane.client()
        print(f"{backend}: {count} pipelines")

        def applies(variant: int) -> list[float]:
            samples = []
            for i in range(count):
                request = spec(f"p{i:04d}", variant)
                samples.append(timed(partial(client.apply_pipeline, request)))
            return samples

        report("apply new pipeline (v1)", applies(0))
        report("apply changed spec (v2)", applies(1))
        report("apply unchanged spec", applies(1))

        def versions(worker: int) -> None:
            own = plane.client()
            for n in range(count // 8):
                own.apply_pipeline(spec("shared", worker * 10_000 + n + 2))

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(versions, range(8)))
        elapsed = time.perf_counter() - start
        made = 8 * (count // 8)
        label = "8 threads, one pipeline, new versions"
        print(f"  {label:<34} n={made:<5} {made / elapsed:6.0f} versions/s")
        latest = client.get_pipeline("shared").latest_version
        assert latest == made, (latest, made)
        samples = [timed(lambda: list(client.list_pipelines(page_size=100))) for _ in range(10)]
        report(f"list all {count + 1} pipelines (pages of 100)", samples)


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
