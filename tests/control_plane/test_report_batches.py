"""How the agents' stream groups the reports that arrived together: a lease's started, log
and result reports are applied together where its last one was (a result closes the
group), other reports one by one in order, and the acknowledgement stops before the first
report that was not applied."""

from __future__ import annotations

from control_plane.api.agent_service import _acknowledge, _lease_groups, _lease_reports
from control_plane.execution.hub import AgentSession
from legato.v1 import agent_pb2, agent_service_pb2, run_pb2

pb = agent_service_pb2


def started(seq: int, lease: str) -> pb.ConnectRequest:
    return pb.ConnectRequest(seq=seq, started=pb.TaskStarted(lease_id=lease))


def logs(seq: int, lease: str, *texts: str) -> pb.ConnectRequest:
    lines = [agent_pb2.TaskLogLine(text=text, stream=run_pb2.LOG_STREAM_STDOUT) for text in texts]
    return pb.ConnectRequest(seq=seq, logs=pb.TaskLogs(lease_id=lease, lines=lines))


def result(seq: int, lease: str) -> pb.ConnectRequest:
    outcome = pb.TaskResult(lease_id=lease, outcome=agent_pb2.TASK_OUTCOME_SUCCEEDED)
    return pb.ConnectRequest(seq=seq, result=outcome)


def credit(seq: int) -> pb.ConnectRequest:
    return pb.ConnectRequest(seq=seq, credit=pb.CreditGrant(credits=1))


def seqs(groups: dict[int, list[pb.ConnectRequest]]) -> dict[int, list[int]]:
    return {index: [r.seq for r in members] for index, members in groups.items()}


def test_a_lease_s_reports_are_applied_together_where_the_last_one_was() -> None:
    batch = [started(1, "A"), started(2, "B"), credit(3), logs(4, "A", "x"), result(5, "A")]
    assert seqs(_lease_groups(batch)) == {4: [1, 4, 5], 1: [2]}


def test_a_result_closes_its_lease_s_group() -> None:
    batch = [started(1, "A"), result(2, "A"), logs(3, "A", "late")]
    assert seqs(_lease_groups(batch)) == {1: [1, 2], 2: [3]}


def test_the_group_carries_every_report_in_order() -> None:
    reports = _lease_reports("A", [started(1, "A"), logs(2, "A", "a", "b"), result(3, "A")])
    assert reports.started and reports.outcome is not None
    assert reports.outcome.status == "succeeded"
    assert [[line.text for line in lines] for lines, _ in reports.logs] == [["a", "b"]]


def acks(session: AgentSession) -> list[tuple[int, tuple[tuple[int, str, int, str], ...]]]:
    sent = []
    while not session.outbox.empty():
        message = session.outbox.get_nowait()
        assert message is not None
        sent.append((message.through_seq, message.rejections))
    return sent


def test_one_acknowledgement_covers_a_batch_with_its_rejections() -> None:
    session = AgentSession(name="a", instance_id="i", labels={}, slots=1)
    batch = [started(1, "A"), credit(2), result(3, "A")]
    rejection = (1, "A", 9, "no longer current")
    _acknowledge(session, batch, batch, [rejection])
    assert acks(session) == [(3, (rejection,))]


def test_the_acknowledgement_stops_before_the_first_report_not_applied() -> None:
    session = AgentSession(name="a", instance_id="i", labels={}, slots=1)
    batch = [credit(1), started(2, "A"), credit(3), result(4, "A")]
    # The store failed on lease A's group: credits 1 and 3 were applied, A was not.
    _acknowledge(session, batch, [batch[0], batch[2]], [])
    assert acks(session) == [(1, ())]
