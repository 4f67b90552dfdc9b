"""The agent's buffer of unacknowledged reports."""

from __future__ import annotations

from executor.reports import ReportBuffer
from legato.v1 import agent_pb2
from legato.v1 import agent_service_pb2 as pb


def logs(lines: int) -> pb.ConnectRequest:
    return pb.ConnectRequest(
        logs=pb.TaskLogs(lease_id="l", lines=[agent_pb2.TaskLogLine(text="x")] * lines)
    )


def result() -> pb.ConnectRequest:
    return pb.ConnectRequest(result=pb.TaskResult(lease_id="l"))


def test_an_ack_covers_only_what_was_written_before_it() -> None:
    buffer = ReportBuffer()
    queued = buffer.add(result())
    heartbeat_seq = buffer.next_seq()  # a heartbeat overtakes the queued result
    buffer.ack(heartbeat_seq)
    assert buffer.unacknowledged() == [queued]
    queued.seq = buffer.next_seq()  # now the result is written
    buffer.ack(queued.seq)
    assert len(buffer) == 0


def test_unacknowledged_reports_are_resent_in_order_and_renumbered() -> None:
    buffer = ReportBuffer()
    first, second = buffer.add(logs(2)), buffer.add(result())
    first.seq, second.seq = buffer.next_seq(), buffer.next_seq()
    again = buffer.unacknowledged()
    assert again == [first, second]
    assert [r.seq for r in again] == [0, 0]


def test_when_full_unsent_log_batches_go_first_and_results_stay() -> None:
    buffer = ReportBuffer(max_reports=3)
    buffer.add(logs(10))
    buffer.add(result())
    buffer.add(logs(5))
    buffer.add(result())
    kinds = [r.WhichOneof("message") for r in buffer.unacknowledged()]
    assert kinds == ["result", "logs", "result"]
    assert buffer.take_dropped("l") == 10
    assert buffer.take_dropped("l") == 0
