"""W7: one long run, as a new user would try it — a chain of N no-op steps (default 2,000) on
the embedded SQLite store with one agent — first alone, then with a follower streaming the
run's changes and log lines (what `legato logs -f` does) [target: the per-step cost of the
40-step chain: <= 20 s for 2,000 steps, <= 2 min for 10,000].

    .venv/bin/python bench/bench_large_run.py [--steps 2000] [--backend sqlite|postgres]
        [--no-follow]

Prints the run's wall time, steps/s, and CPU per step of the control plane (`legato
server`), of the agent with its step processes, and of this process's clients (one waits on
WatchRun instead of polling GetRun, whose cost grows with the run; the follower)."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from bench_execution import chain
from harness import BenchPlane, CpuMeter, cluster

from legato.v1 import run_pb2


def run_once(plane: BenchPlane, name: str, steps: int, follow: bool) -> None:
    client = plane.client()
    meter = CpuMeter(plane.agent_pids, plane.server_pid)
    events = [0]
    meter.start()
    started = time.perf_counter()
    run_id = client.trigger_run(name).run.id
    follower = None
    if follow:

        def follow_run() -> None:
            for _ in plane.client().watch_run(run_id, include_logs=True):
                events[0] += 1

        follower = threading.Thread(target=follow_run, daemon=True)
        follower.start()
    # Wait for the end on a stream of the run's changes (not polling GetRun, whose cost
    # grows with the run).
    for event in client.watch_run(run_id):
        if event.WhichOneof("event") == "run" and event.run.status in (
            run_pb2.RUN_STATUS_SUCCEEDED,
            run_pb2.RUN_STATUS_FAILED,
            run_pb2.RUN_STATUS_CANCELLED,
        ):
            assert event.run.status == run_pb2.RUN_STATUS_SUCCEEDED, event.run.error
            break
    elapsed = time.perf_counter() - started
    if follower is not None:
        follower.join(60)
    meter.stop()
    with_follower = f", with a follower ({events[0]} events)" if follow else ", alone"
    print(
        f"  W7 {steps}-step chain{with_follower}: {elapsed:.1f} s = {steps / elapsed:.1f} "
        f"steps/s; CPU per step: control plane {1000 * meter.server / steps:.1f} ms, agent + "
        f"step processes {1000 * meter.agents / steps:.1f} ms, clients "
        f"{1000 * meter.own / steps:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--no-follow", action="store_true", help="skip the run with a follower")
    args = parser.parse_args()
    print(f"{args.backend}, 1 agent with 8 slots:")
    with cluster(args.backend, agents=1, slots=8) as plane:
        client = plane.client()
        client.apply_pipeline(chain("w7", args.steps))
        run_once(plane, "w7", args.steps, follow=False)
        if not args.no_follow:
            run_once(plane, "w7", args.steps, follow=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
