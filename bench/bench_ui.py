"""The web UI with a lot in it, in Debian's chromium (Playwright): issue 13's "1,000
pipelines / 10,000 runs without freezing; a live log of 100,000 lines stays responsive".

    .venv/bin/python bench/bench_ui.py [--pipelines 1000] [--runs 10000] [--log-lines 100000]

A control plane (in this process, SQLite) and one real `legato agent` process are seeded
with that many pipelines, runs (queued behind `max_concurrent_runs: 1` and a step no agent
can take, so they cost the dispatcher nothing) and one run whose step prints that many log
lines and then keeps running. For each page the figures are what a user feels:

- **first rows**: from navigation to the first row on screen;
- **scroll**: the page scrolled through its list in 40 wheel steps — the longest main-thread
  task (Long Tasks API; > 50 ms is a visible stall) and the rows in the DOM (virtualised
  lists keep it small whatever the data);
- **log**: time until the last line is on screen, the longest task while it loaded, the JS
  heap used, and the longest task while scrolling it and while new lines keep arriving.

Nothing is asserted; the figures go to bench/RESULTS.md."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from legato.spec import load_spec_text
from legato.testing import LocalControlPlane

LEGATO = str(Path(sys.executable).with_name("legato"))
CHROMIUM = os.environ.get("LEGATO_TEST_CHROMIUM", "/usr/bin/chromium")
LONG_TASKS = """
window.__longest = 0; window.__long = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__longest = Math.max(window.__longest, entry.duration);
    window.__long += 1;
  }
}).observe({type: "longtask", buffered: true});
"""


def seed(plane: LocalControlPlane, pipelines: int, runs: int, log_lines: int) -> str:
    client = plane.client()
    started = time.perf_counter()
    for number in range(pipelines):
        client.apply_pipeline(
            load_spec_text(
                f"name: bulk-{number:04d}\ndescription: pipeline {number}\n"
                "steps:\n  - name: only\n    transform: {code: 'result = 1'}\n"
            ).spec
        )
    print(f"  seeded {pipelines} pipelines in {time.perf_counter() - started:.1f} s")
    client.apply_pipeline(
        load_spec_text(
            textwrap.dedent(
                """
                name: queued
                limits: {max_concurrent_runs: 1}
                steps:
                  - name: nowhere
                    agent_selector: {region: mars}
                    transform: {code: "result = 1"}
                """
            )
        ).spec
    )
    started = time.perf_counter()
    for _ in range(runs):
        client.trigger_run("queued")
    print(f"  seeded {runs} runs in {time.perf_counter() - started:.1f} s")
    client.apply_pipeline(
        load_spec_text(
            textwrap.dedent(
                f"""
                name: chatty
                steps:
                  - name: talk
                    transform:
                      code: |
                        import sys, time
                        for i in range({log_lines}):
                            print(f"line {{i + 1}} of the log, some text to make it wide")
                        sys.stdout.flush()
                        for i in range(600):
                            print(f"still running {{i}}", flush=True)
                            time.sleep(0.1)
                        result = 1
                """
            )
        ).spec
    )
    run_id = client.trigger_run("chatty").run.id
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        logs = sum(1 for _ in client.get_run_logs(run_id, page_size=1000))
        if logs >= log_lines:
            break
        time.sleep(1)
    print(f"  the chatty run has {logs} log lines")
    return run_id


def measure_list(page: Any, path: str, row: str) -> None:
    page.goto("about:blank")
    page.add_init_script(LONG_TASKS)
    started = time.perf_counter()
    page.goto(path)
    page.locator(f'[data-testid="{row}"]').first.wait_for()
    first = time.perf_counter() - started
    page.evaluate("window.__longest = 0")
    box = page.locator(f'[data-testid="{row}"]').first.bounding_box()
    page.mouse.move(box["x"] + 50, box["y"] + 10)
    started = time.perf_counter()
    for _ in range(40):
        page.mouse.wheel(0, 2000)
        page.wait_for_timeout(25)
    scrolled = time.perf_counter() - started
    longest = page.evaluate("window.__longest")
    rendered = page.locator(f'[data-testid="{row}"]').count()
    print(
        f"  {path}: first rows {first * 1000:.0f} ms; 40 wheel steps in {scrolled:.2f} s, "
        f"longest task {longest:.0f} ms; {rendered} rows in the DOM"
    )


def measure_log(page: Any, run_id: str, log_lines: int) -> None:
    page.goto("about:blank")
    page.add_init_script(LONG_TASKS)
    started = time.perf_counter()
    page.goto(f"/runs/{run_id}")
    page.get_by_test_id("log-view").wait_for()
    last = page.locator('[data-testid="log-line"]', has_text=f"line {log_lines} of the log")
    view = page.get_by_test_id("log-view")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and last.count() == 0:
        view.evaluate("element => { element.scrollTop = 0; }")
        view.evaluate("element => { element.scrollTop = element.scrollHeight; }")
        page.wait_for_timeout(200)
        if page.locator('[data-testid="log-line"]', has_text="still running").count():
            break
    loaded = time.perf_counter() - started
    longest_loading = page.evaluate("window.__longest")
    heap = page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
    page.evaluate("window.__longest = 0")
    box = view.bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 50)
    for _ in range(40):
        page.mouse.wheel(0, -3000)
        page.wait_for_timeout(25)
    page.wait_for_timeout(2000)  # new lines keep arriving (live tail)
    longest_scrolling = page.evaluate("window.__longest")
    rendered = page.get_by_test_id("log-line").count()
    print(
        f"  log of {log_lines} lines: tail on screen after {loaded:.1f} s (longest task "
        f"{longest_loading:.0f} ms, JS heap {heap / 2**20:.0f} MiB); scrolling up 40 steps "
        f"while lines arrive: longest task {longest_scrolling:.0f} ms; {rendered} lines in "
        "the DOM"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=10000)
    parser.add_argument("--log-lines", type=int, default=100_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalControlPlane(db=f"sqlite:///{tmp}/bench.db") as plane,
    ):
        agent = subprocess.Popen(
            [
                *(LEGATO, "agent", "--server", plane.address, "--name", "bench"),
                *("--slots", "4", "--workdir", f"{tmp}/agent", "--log-level", "warning"),
            ],
            env={**os.environ, "LEGATO_AGENT_TOKEN": plane.agent_token("bench")},
            start_new_session=True,
        )
        try:
            print(f"seeding (SQLite, {args.pipelines} pipelines, {args.runs} runs):")
            run_id = seed(plane, args.pipelines, args.runs, args.log_lines)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox"]
                )
                context = browser.new_context(
                    base_url=f"http://{plane.http_address}",
                    viewport={"width": 1440, "height": 900},
                )
                page = context.new_page()
                page.goto("/signin")
                page.get_by_test_id("token-input").fill(plane.token("viewer"))
                page.get_by_test_id("signin-submit").click()
                page.get_by_test_id("nav-pipelines").wait_for()
                print("chromium:")
                measure_list(page, "/pipelines", "pipeline-row")
                measure_list(page, "/runs", "run-row")
                measure_log(page, run_id, args.log_lines)
                browser.close()
            plane.client().cancel_run(run_id)
        finally:
            os.killpg(agent.pid, signal.SIGTERM)
            agent.wait(timeout=20)


if __name__ == "__main__":
    main()
