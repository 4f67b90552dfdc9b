"""What GetPipelineStats reads, on both stores: the latest finished runs (never test runs,
skipped fire times or unfinished runs), each step's latest attempt, in a fixed number of
statements whatever the number of runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from control_plane.access.actors import Actor
from control_plane.errors import InvalidArgument, NotFound
from control_plane.execution.stats import PipelineStats
from control_plane.pipelines.registry import Registry
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from control_plane.store.models import AttemptRow, RunRow, StepRunRow
from control_plane.store.pipelines import find_pipeline
from legato.v1 import spec_pb2
from tests.control_plane.test_hop_statements import counted

T0 = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def spec() -> spec_pb2.PipelineSpec:
    noop = spec_pb2.TransformStep(code="result = None")
    return spec_pb2.PipelineSpec(
        name="etl",
        steps=[
            spec_pb2.Step(name="extract", transform=noop),
            spec_pb2.Step(name="load", needs=["extract"], transform=noop),
        ],
    )


async def add_run(
    db: Database,
    pipeline_id: int,
    index: int,
    *,
    status: str = "succeeded",
    trigger: str = "manual",
    attempts: int = 1,
) -> str:
    """A run of ``etl`` whose ``extract`` took ``index`` seconds per attempt and ``load``
    never ran."""
    run_id = f"run{index:03d}"
    start = T0 + timedelta(minutes=index)
    async with db.write() as session:
        await session.execute(
            insert(RunRow).values(
                id=run_id,
                pipeline_id=pipeline_id,
                pipeline="etl",
                version=1,
                status=status,
                trigger_kind=trigger,
                trigger={},
                params={},
                create_time=start,
                start_time=start,
                end_time=start + timedelta(seconds=60),
            )
        )
        for position, name in enumerate(["extract", "load"], start=1):
            ran = attempts if name == "extract" else 0
            step_id = (
                await session.execute(
                    insert(StepRunRow)
                    .values(
                        run_id=run_id,
                        name=name,
                        position=position,
                        kind="transform",
                        status="succeeded" if ran else "upstream_failed",
                        attempt=ran,
                        selector={},
                        output={},
                    )
                    .returning(StepRunRow.id)
                )
            ).scalar_one()
            for number in range(1, ran + 1):
                await session.execute(
                    insert(AttemptRow).values(
                        step_run_id=step_id,
                        run_id=run_id,
                        number=number,
                        lease_id=f"{run_id}-{name}-{number}",
                        agent="a",
                        status="succeeded" if number == ran else "failed",
                        lease_expire_time=start,
                        create_time=start,
                        start_time=start,
                        # An earlier attempt took 100 s: only the latest one counts.
                        end_time=start + timedelta(seconds=index if number == ran else 100),
                        records_out=index,
                        peak_memory_bytes=index << 20,
                        cpu_seconds=index / 2,
                        memory_limit_bytes=1 << 30,
                    )
                )
    return run_id


@pytest.fixture
async def stored(db_url: str) -> tuple[Database, int]:
    db = Database(db_url)
    await upgrade(db)
    await Registry(db).apply(spec(), "", Actor("alice"))
    async with db.read() as session:
        row = await find_pipeline(session, "etl")
        assert row is not None
        return db, row.id


async def test_only_finished_production_runs_count_newest_first(
    stored: tuple[Database, int],
) -> None:
    db, pipeline_id = stored
    try:
        for index in range(1, 6):
            await add_run(db, pipeline_id, index, attempts=2 if index == 3 else 1)
        await add_run(db, pipeline_id, 6, trigger="test")
        await add_run(db, pipeline_id, 7, status="skipped")
        await add_run(db, pipeline_id, 8, status="running")
        report = await PipelineStats(db).of("etl", 4)
        assert [r.id for r in report.runs] == ["run005", "run004", "run003", "run002"]
        (extract,) = report.steps  # load never ran
        assert extract.count == 4 and extract.failures == 0
        assert [s.run_id for s in extract.samples] == ["run002", "run003", "run004", "run005"]
        assert extract.duration_p50 == 3.5  # run003's retried attempt is not counted
        assert extract.memory_limit_bytes == 1 << 30
        assert report.slowest_step == "extract"
    finally:
        await db.dispose()


async def test_the_statements_do_not_grow_with_the_runs(stored: tuple[Database, int]) -> None:
    db, pipeline_id = stored
    try:
        stats = PipelineStats(db)
        for index in range(1, 3):
            await add_run(db, pipeline_id, index)
        with counted(db) as few:
            await stats.of("etl", 30)
        for index in range(3, 40):
            await add_run(db, pipeline_id, index)
        with counted(db) as many:
            report = await stats.of("etl", 30)
        assert len(report.runs) == 30
        assert len(many) == len(few) <= 6, many
    finally:
        await db.dispose()


async def test_unknown_and_missing_pipelines(stored: tuple[Database, int]) -> None:
    db, _ = stored
    try:
        with pytest.raises(NotFound) as unknown:
            await PipelineStats(db).of("nope", 30)
        assert unknown.value.reason == "PIPELINE_NOT_FOUND"
        with pytest.raises(InvalidArgument):
            await PipelineStats(db).of("", 30)
        empty = await PipelineStats(db).of("etl", 30)
        assert empty.runs == [] and empty.steps == [] and empty.slowest_step == ""
    finally:
        await db.dispose()
