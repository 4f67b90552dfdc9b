"""The registry against a real database on both backends: versions, idempotency,
rollback, archive, pagination and concurrent writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from control_plane.errors import FailedPrecondition, InvalidArgument, InvalidSpec, NotFound
from control_plane.pipelines.registry import Actor, PipelineInfo, Registry
from control_plane.scheduling.schedules import ScheduleSync
from control_plane.store.db import Database
from control_plane.store.migrate import upgrade
from legato.v1 import spec_pb2

Spec = Callable[..., spec_pb2.PipelineSpec]
ALICE = Actor("alice")


@pytest.fixture
async def registry(db_url: str) -> AsyncIterator[Registry]:
    db = Database(db_url)
    await upgrade(db)
    try:
        yield Registry(db)
    finally:
        await db.dispose()


async def test_apply_creates_then_recognises_unchanged(registry: Registry, make_spec: Spec) -> None:
    first = await registry.apply(make_spec(), "first cut", ALICE)
    assert (first.created, first.version.number, first.pipeline.latest_version) == (True, 1, 1)
    assert first.version.author == "alice"
    assert first.version.message == "first cut"
    assert first.version.content_hash.startswith("sha256:")

    again = await registry.apply(make_spec(), "no change", Actor("bob"))
    assert (again.created, again.version.number) == (False, 1)
    assert again.version.author == "alice"

    changed = await registry.apply(make_spec(code="result = data.dropna()"), "", ALICE)
    assert (changed.created, changed.version.number) == (True, 2)
    assert changed.version.content_hash != first.version.content_hash


async def test_equivalent_spellings_are_one_version(registry: Registry, make_spec: Spec) -> None:
    spec = make_spec()
    spec.steps[1].memory = "1Gi"
    await registry.apply(spec, "", ALICE)
    same = make_spec()
    same.steps[1].memory = "1024Mi"
    result = await registry.apply(same, "", ALICE)
    assert not result.created
    assert result.version.spec.steps[1].memory == "1Gi"


async def test_invalid_spec_is_refused_and_nothing_is_stored(
    registry: Registry, make_spec: Spec
) -> None:
    spec = make_spec()
    spec.steps[2].needs[:] = ["claen"]
    with pytest.raises(InvalidSpec) as caught:
        await registry.apply(spec, "", ALICE)
    fields = [v.field for v in caught.value.violations]
    assert "steps[2].needs[0]" in fields
    with pytest.raises(NotFound):
        await registry.get("etl")


async def test_rollback_adds_a_version_equal_to_the_target(
    registry: Registry, make_spec: Spec
) -> None:
    v1 = await registry.apply(make_spec(), "", ALICE)
    await registry.apply(make_spec(code="result = data.head()"), "", ALICE)
    rolled = await registry.rollback("etl", 1, "bad deploy", ALICE)
    assert (rolled.created, rolled.version.number, rolled.version.rollback_of) == (True, 3, 1)
    assert rolled.version.content_hash == v1.version.content_hash
    assert rolled.version.message == "bad deploy"
    assert rolled.version.spec == v1.version.spec
    # Rolling back to what is already the latest content adds nothing.
    again = await registry.rollback("etl", 1, "", ALICE)
    assert (again.created, again.version.number) == (False, 3)
    # History is kept whole.
    page = await registry.list_versions("etl", page_size=0, page_token="")
    assert [v.number for v in page.items] == [3, 2, 1]


async def test_rollback_to_missing_version_names_the_range(
    registry: Registry, make_spec: Spec
) -> None:
    await registry.apply(make_spec(), "", ALICE)
    with pytest.raises(NotFound, match="has no version 7; its versions are 1 to 1"):
        await registry.rollback("etl", 7, "", ALICE)


async def test_request_id_replays_the_first_result(registry: Registry, make_spec: Spec) -> None:
    first = await registry.apply(make_spec(), "", Actor("alice", "req-1"))
    await registry.apply(make_spec(code="result = data.tail()"), "", ALICE)
    # A retry of the first call after someone else's change returns version 1, created.
    replay = await registry.apply(make_spec(), "", Actor("alice", "req-1"))
    assert (replay.created, replay.version.number) == (True, 1)
    assert replay.version.content_hash == first.version.content_hash
    assert (await registry.get("etl")).latest_version == 2


async def test_archive_hides_and_restore_shows(registry: Registry, make_spec: Spec) -> None:
    await registry.apply(make_spec("alpha"), "", ALICE)
    await registry.apply(make_spec("beta"), "", ALICE)
    archived = await registry.set_archived("alpha", True, ALICE)
    assert archived.archived and archived.archive_time is not None
    visible = await registry.list(page_size=0, page_token="", show_archived=False, name_prefix="")
    assert [p.name for p in visible.items] == ["beta"]
    everything = await registry.list(page_size=0, page_token="", show_archived=True, name_prefix="")
    assert [p.name for p in everything.items] == ["alpha", "beta"]
    with pytest.raises(FailedPrecondition, match="is archived; restore it first"):
        await registry.apply(make_spec("alpha", code="result = 1"), "", ALICE)
    restored = await registry.set_archived("alpha", False, ALICE)
    assert not restored.archived and restored.archive_time is None
    assert (await registry.get("alpha")).latest_version == 1


async def test_list_pages_through_every_pipeline(registry: Registry, make_spec: Spec) -> None:
    names = [f"p{i:02d}" for i in range(7)]
    for name in names:
        await registry.apply(make_spec(name), "", ALICE)
    seen: list[str] = []
    token = ""
    while True:
        page = await registry.list(
            page_size=3, page_token=token, show_archived=False, name_prefix=""
        )
        assert len(page.items) <= 3
        seen.extend(p.name for p in page.items)
        token = page.next_page_token
        if not token:
            break
    assert seen == names
    first = await registry.list(page_size=3, page_token="", show_archived=False, name_prefix="")
    with pytest.raises(InvalidArgument, match="other filters"):
        await registry.list(
            page_size=3, page_token=first.next_page_token, show_archived=True, name_prefix=""
        )
    with pytest.raises(InvalidArgument, match="not a token this server issued"):
        await registry.list(page_size=3, page_token="garbage!", show_archived=False, name_prefix="")
    prefixed = await registry.list(
        page_size=0, page_token="", show_archived=False, name_prefix="p0"
    )
    assert [p.name for p in prefixed.items] == names


async def test_diff_names_changed_steps_and_fields(registry: Registry, make_spec: Spec) -> None:
    await registry.apply(make_spec(), "", ALICE)
    spec = make_spec(code="result = data.dropna()", cron="0 3 * * *")
    spec.steps.append(
        spec_pb2.Step(
            name="report", needs=["load"], function=spec_pb2.FunctionStep(function="reports:build")
        )
    )
    await registry.apply(spec, "", ALICE)
    old, new, diff = await registry.diff("etl", 1, 0)
    assert (old, new) == (1, 2)
    assert diff.fields_changed == ["schedule.cron"]
    assert diff.steps_added == ["report"]
    assert diff.steps_removed == []
    assert [(c.step, c.fields) for c in diff.steps_changed] == [("clean", ["transform.code"])]
    assert "-  cron: 0 2 * * *" in diff.unified_diff or "-  cron: '0 2 * * *'" in diff.unified_diff
    assert "+++ etl@v2" in diff.unified_diff


async def test_concurrent_applies_never_share_a_version_number(
    registry: Registry, make_spec: Spec
) -> None:
    await registry.apply(make_spec(), "", ALICE)
    results = await asyncio.gather(
        *(
            registry.apply(make_spec(code=f"result = data.head({i})"), "", Actor(f"u{i}"))
            for i in range(8)
        )
    )
    numbers = sorted(r.version.number for r in results)
    assert numbers == list(range(2, 10))
    page = await registry.list_versions("etl", page_size=0, page_token="")
    assert [v.number for v in page.items] == list(range(9, 0, -1))


async def test_concurrent_creators_of_one_pipeline_make_one_version(
    registry: Registry, make_spec: Spec
) -> None:
    results = await asyncio.gather(
        *(registry.apply(make_spec("fresh"), "", ALICE) for _ in range(6))
    )
    assert sorted(r.created for r in results) == [False] * 5 + [True]
    assert {r.version.number for r in results} == {1}


async def _nothing() -> None:
    return None


def _seen(info: PipelineInfo) -> tuple[object, ...]:
    schedule = info.schedule
    return (
        info.name,
        info.description,
        info.latest_version,
        info.archived,
        info.create_time,
        info.update_time,
        info.archive_time,
        info.spec,
        None if schedule is None else (schedule.version, schedule.next_fire_time),
    )


async def test_each_mutation_answers_what_a_read_then_finds(db_url: str, make_spec: Spec) -> None:
    """Applies answer from what they hold, not from a read back: the answer of each
    mutation equals what GetPipeline reads after it, the schedule the watchers wrote
    included."""
    db = Database(db_url)
    await upgrade(db)
    registry = Registry(db)
    registry.watch(ScheduleSync(_nothing))
    try:
        created = await registry.apply(make_spec(), "", ALICE)
        assert created.pipeline.schedule is not None
        assert created.pipeline.schedule.next_fire_time is not None
        assert _seen(created.pipeline) == _seen(await registry.get("etl"))
        changed = await registry.apply(make_spec(cron="0 5 * * *"), "", ALICE)
        assert changed.pipeline.schedule is not None
        assert changed.pipeline.schedule.version == 2
        assert _seen(changed.pipeline) == _seen(await registry.get("etl"))
        unchanged = await registry.apply(make_spec(cron="0 5 * * *"), "", ALICE)
        assert not unchanged.created
        assert _seen(unchanged.pipeline) == _seen(await registry.get("etl"))
        assert unchanged.version == await registry.get_version("etl", 0)
        rolled = await registry.rollback("etl", 1, "", ALICE)
        assert _seen(rolled.pipeline) == _seen(await registry.get("etl"))
        assert rolled.version == await registry.get_version("etl", 3)
        archived = await registry.set_archived("etl", True, ALICE)
        assert archived.schedule is not None and archived.schedule.next_fire_time is None
        assert _seen(archived) == _seen(await registry.get("etl"))
    finally:
        await db.dispose()


async def test_concurrent_writers_and_their_retries_lose_and_repeat_no_version(
    registry: Registry, make_spec: Spec
) -> None:
    """Eight writers add five versions each to one pipeline, each call with its own
    request id, and then send every call again: the numbers are exactly 2..41, each
    retry answers its first call's number and adds nothing."""
    await registry.apply(make_spec(), "", ALICE)

    async def writer(w: int) -> list[tuple[str, int]]:
        made = []
        for n in range(5):
            actor = Actor(f"u{w}", f"req-{w}-{n}")
            code = f"result = data.head({w * 100 + n})"
            result = await registry.apply(make_spec(code=code), "", actor)
            assert result.created
            made.append((code, result.version.number))
        return made

    runs = await asyncio.gather(*(writer(w) for w in range(8)))
    numbers = sorted(number for made in runs for _, number in made)
    assert numbers == list(range(2, 42))

    async def retry(w: int, made: list[tuple[str, int]]) -> None:
        for n, (code, number) in enumerate(made):
            again = await registry.apply(make_spec(code=code), "", Actor(f"u{w}", f"req-{w}-{n}"))
            assert (again.created, again.version.number) == (True, number)

    await asyncio.gather(*(retry(w, made) for w, made in enumerate(runs)))
    assert (await registry.get("etl")).latest_version == 41
    page = await registry.list_versions("etl", page_size=0, page_token="")
    assert [v.number for v in page.items] == list(range(41, 0, -1))
