"""The web UI in a real browser (Playwright driving Debian's chromium) against a real
control plane with a real agent process: sign in with a token and with a one-time link;
write a pipeline in the editor, see the problem at its line, fix it, save it; run it from
its page, watch its log arrive live and its Gantt fill in; see a step fail, rerun the
failed steps; diff two versions, roll back; a viewer sees no Run button and the API
refuses it anyway; a thousand pipelines stay a short list of rows in the page.

Each page is photographed on the way (``LEGATO_UI_SCREENSHOTS=docs/ui`` writes them where
docs/ui.md shows them; otherwise they go to the test's temporary directory).

Without chromium these tests skip, saying how to install it — except in CI, where
``LEGATO_TEST_REQUIRE_BROWSER=1`` makes a missing browser a failure."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import Cluster, running_cluster

from legato.spec import load_spec_text

pytestmark = pytest.mark.timeout(240)

CHROMIUM = os.environ.get("LEGATO_TEST_CHROMIUM", "/usr/bin/chromium")
INSTALL = (
    "the browser tests need Debian's chromium: `apt-get install -y chromium` as root (or set "
    "LEGATO_TEST_CHROMIUM to a Chromium binary), and `pip install playwright`"
)


def _browser_missing() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return INSTALL
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return INSTALL
    return ""


missing = _browser_missing()
if missing and os.environ.get("LEGATO_TEST_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"LEGATO_TEST_REQUIRE_BROWSER=1 but {missing}")
if missing:
    pytest.skip(missing, allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

BROKEN = """\
name: ui-etl
description: Orders from the shop, counted and checked
params:
  rows:
    type: integer
    default: 3
steps:
  - name: extract
    transform:
      code: |
        import time
        for i in range(10):
            print(f"reading batch {i}", flush=True)
            time.sleep(0.5)
        result = {"rows": params["rows"]}
  - name: check
    needs: [extrac]
    transform:
      code: |
        import os
        if not os.path.exists(os.environ.get("UI_MARKER", "/nonexistent")):
            raise RuntimeError("the orders table is locked")
        result = inputs["extract"]
"""


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("LEGATO_UI_SCREENSHOTS", "")
    folder = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("marker") / "unlocked"


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, marker: Path) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("ui-cluster")
    with running_cluster(f"sqlite:///{workdir / 'legato.db'}", workdir) as cluster:
        cluster.start_agent("near-shop", slots=4, env={"UI_MARKER": str(marker)})
        yield cluster


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, ui: Cluster) -> Iterator[Page]:
    context = browser.new_context(
        base_url=f"http://{ui.plane.http_address}", viewport={"width": 1440, "height": 900}
    )
    context.set_default_timeout(20_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"the page threw: {errors}"


def sign_in(page: Page, token: str) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/signin"))
    page.get_by_test_id("token-input").fill(token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("nav-pipelines")).to_be_visible()


def type_spec(page: Page, text: str) -> None:
    """Replace the editor's text as a paste would (no auto-indent on the way)."""
    editor = page.get_by_test_id("yaml-editor").locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def test_signing_in_with_a_token_or_a_one_time_link_and_out(
    page: Page, ui: Cluster, shots: Path
) -> None:
    page.goto("/runs")
    expect(page).to_have_url(re.compile(r"/signin"))
    page.get_by_test_id("token-input").fill("lgt_not_a_token")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_contain_text("not")
    page.screenshot(path=shots / "signin.png")

    sign_in(page, ui.plane.token("viewer", name="vera"))
    expect(page.get_by_test_id("caller")).to_contain_text("vera")
    page.get_by_test_id("signout").click()
    expect(page).to_have_url(re.compile(r"/signin"))
    page.goto("/pipelines")
    expect(page).to_have_url(re.compile(r"/signin"))

    link = ui.plane.client(role="operator").create_sign_in_link(next_path="/agents")
    page.goto(link.url)
    expect(page).to_have_url(re.compile(r"/agents$"))
    expect(page.get_by_test_id("caller")).to_contain_text("tester-operator")
    expect(page.locator('[data-testid="agent-row"][data-name="near-shop"]')).to_be_visible()
    page.screenshot(path=shots / "agents.png")
    page.goto(link.url)  # a link works once
    expect(page.get_by_test_id("signin-error")).to_contain_text("used already")


def test_write_run_debug_rerun_diff_and_roll_back_a_pipeline(
    page: Page, ui: Cluster, shots: Path, marker: Path
) -> None:
    sign_in(page, ui.plane.token("admin", name="ada"))
    page.get_by_test_id("nav-pipelines").click()
    page.get_by_test_id("new-pipeline").click()
    expect(page).to_have_url(re.compile(r"/pipelines/new"))

    type_spec(page, BROKEN)
    typo_line = BROKEN.splitlines().index("    needs: [extrac]") + 1
    problem = page.locator(f'[data-testid="problem"][data-line="{typo_line}"]')
    expect(problem).to_contain_text("did you mean 'extract'")
    expect(page.get_by_test_id("save-button")).to_be_disabled()
    page.screenshot(path=shots / "editor-problem.png")

    type_spec(page, BROKEN.replace("[extrac]", "[extract]"))
    expect(page.get_by_test_id("problem")).to_have_count(0)
    preview = page.get_by_test_id("dag-preview")
    expect(preview.locator('[data-testid="dag-node"][data-step="check"]')).to_be_visible()
    expect(preview.get_by_test_id("dag-node")).to_have_count(2)
    page.get_by_test_id("save-message").fill("first cut")
    page.screenshot(path=shots / "editor.png")
    page.get_by_test_id("save-button").click()
    expect(page).to_have_url(re.compile(r"/pipelines/ui-etl$"))
    expect(page.get_by_test_id("pipeline-version")).to_have_text("1")
    expect(page.get_by_test_id("dag").get_by_test_id("dag-node")).to_have_count(2)

    page.get_by_test_id("run-button").click()
    page.get_by_test_id("param-rows").fill("5")
    page.get_by_test_id("run-submit").click()
    expect(page).to_have_url(re.compile(r"/runs/[a-z0-9]+$"))
    first_run = page.url.rsplit("/", 1)[1]

    # The log arrives while the run is still running (the step prints a line every
    # 0.5 s): a live tail, not a reload.
    expect(page.get_by_test_id("run-status")).to_have_text("running", timeout=30_000)
    expect(page.get_by_test_id("log-line").first).to_be_visible()
    assert page.get_by_test_id("run-status").inner_text() == "running"
    assert page.get_by_test_id("log-line").count() < 10
    expect(page.get_by_test_id("run-status")).to_have_text("failed", timeout=60_000)
    extract_lines = page.locator('[data-testid="log-line"][data-step="extract"]')
    expect(extract_lines.filter(has_text="reading batch")).to_have_count(10)
    expect(page.locator('[data-testid="gantt-bar"][data-step="extract"]')).to_have_count(1)
    expect(
        page.locator('[data-testid="gantt-bar"][data-step="check"][data-status="failed"]')
    ).to_have_count(1)
    failed = page.locator('[data-testid="step-row"][data-step="check"]')
    expect(failed).to_have_attribute("data-status", "failed")
    expect(page.get_by_test_id("step-error").first).to_contain_text("the orders table is locked")
    page.get_by_test_id("log-step-filter").select_option("check")
    expect(page.locator('[data-testid="log-line"][data-step="extract"]')).to_have_count(0)
    page.get_by_test_id("log-step-filter").select_option("")
    page.screenshot(path=shots / "run-failed.png", full_page=True)

    marker.write_text("unlocked")  # what the failing step waited for
    page.get_by_test_id("rerun-failed-button").click()
    expect(page).not_to_have_url(re.compile(rf"/runs/{first_run}$"))
    expect(page.get_by_test_id("run-status")).to_have_text("succeeded", timeout=60_000)
    rerun = ui.client.get_run(page.url.rsplit("/", 1)[1])
    assert rerun.trigger.rerun_of == first_run, rerun
    page.screenshot(path=shots / "run.png", full_page=True)

    page.get_by_test_id("nav-runs").click()
    expect(page.locator(f'[data-testid="run-row"][data-run-id="{first_run}"]')).to_have_attribute(
        "data-status", "failed"
    )
    page.screenshot(path=shots / "runs.png")

    page.goto("/pipelines/ui-etl/edit")
    expect(page.get_by_test_id("yaml-editor")).to_contain_text("ui-etl")
    changed = BROKEN.replace("[extrac]", "[extract]").replace("default: 3", "default: 30")
    type_spec(page, changed)
    expect(page.get_by_test_id("problem")).to_have_count(0)
    page.get_by_test_id("save-message").fill("more rows by default")
    page.get_by_test_id("save-button").click()
    expect(page.get_by_test_id("pipeline-version")).to_have_text("2")

    page.get_by_test_id("diff-from").select_option("1")
    page.get_by_test_id("diff-to").select_option("2")
    page.get_by_test_id("diff-button").click()
    expect(page).to_have_url(re.compile(r"/pipelines/ui-etl/diff\?from=1&to=2"))
    view = page.get_by_test_id("diff-view")
    expect(view.locator('[data-testid="diff-line"][data-kind="removed"]')).to_contain_text(
        "default: 3"
    )
    expect(view.locator('[data-testid="diff-line"][data-kind="added"]')).to_contain_text(
        "default: 30"
    )
    page.screenshot(path=shots / "diff.png")

    page.goto("/pipelines/ui-etl")
    page.locator('[data-testid="version-row"][data-version="1"]').get_by_test_id(
        "rollback-button"
    ).click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("pipeline-version")).to_have_text("3")
    latest = ui.client.get_pipeline_version("ui-etl")
    assert latest.rollback_of == 1 and latest.author == "ada"
    page.screenshot(path=shots / "pipeline.png", full_page=True)

    page.get_by_test_id("nav-activity").click()
    expect(page.get_by_test_id("audit-row").first).to_be_visible()
    page.screenshot(path=shots / "activity.png")
    page.get_by_test_id("nav-notifications").click()
    expect(page).to_have_url(re.compile(r"/notifications"))
    page.screenshot(path=shots / "notifications.png")


def test_a_viewer_sees_no_run_button_and_the_api_refuses_it(page: Page, ui: Cluster) -> None:
    ui.apply(
        """
        name: ui-viewed
        steps:
          - name: only
            transform: {code: "result = 1"}
        """
    )
    sign_in(page, ui.plane.token("viewer", name="vic"))
    page.goto("/pipelines/ui-viewed")
    expect(page.get_by_test_id("dag").get_by_test_id("dag-node")).to_have_count(1)
    for button in ("run-button", "archive-button", "pause-button"):
        expect(page.get_by_test_id(button)).to_have_count(0)
    expect(page.locator('[data-testid="rollback-button"]')).to_have_count(0)
    refused = page.request.post(
        "/api/legato.v1.RunService/TriggerRun",
        data='{"pipeline": "ui-viewed", "requestId": "viewer-try"}',
        headers={"Content-Type": "application/json", "Connect-Protocol-Version": "1"},
    )
    assert refused.status == 403, refused.text()
    assert "needs the operator role" in refused.json()["message"]

    # What an agent holds is on its row, linked to the run.
    ui.apply(
        """
        name: ui-busy
        steps:
          - name: nap
            transform: {code: "import time; time.sleep(60); result = 1"}
        """
    )
    busy = ui.client.trigger_run("ui-busy").run.id
    page.goto("/agents")
    lease = page.locator(f'[data-testid="agent-lease"][data-run-id="{busy}"]')
    expect(lease).to_have_text("nap#1")
    (agent,) = [a for a in ui.client.list_agents() if a.name == "near-shop"]
    assert [(x.run_id, x.step, x.attempt) for x in agent.leases] == [(busy, "nap", 1)]
    lease.click()
    expect(page).to_have_url(re.compile(rf"/runs/{busy}\?step=nap$"))
    ui.client.cancel_run(busy)


def test_a_thousand_pipelines_stay_a_short_list_of_rows(
    page: Page, ui: Cluster, shots: Path
) -> None:
    client = ui.client
    schedule = 'schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}'
    for number in range(1000):
        spec = load_spec_text(
            textwrap.dedent(
                f"""
                name: bulk-{number:04d}
                description: pipeline number {number}
                {schedule if number % 3 == 0 else ""}
                steps:
                  - name: only
                    transform: {{code: "result = {number}"}}
                """
            )
        ).spec
        client.apply_pipeline(spec)
    sign_in(page, ui.plane.token("viewer", name="bulk-viewer"))
    page.goto("/pipelines")
    expect(page.locator('[data-testid="pipeline-row"][data-name="bulk-0000"]')).to_be_visible()
    rendered = page.get_by_test_id("pipeline-row").count()
    assert rendered < 200, f"{rendered} rows in the page: the list is not virtualised"
    page.get_by_test_id("pipeline-search").fill("bulk-0999")
    expect(page.locator('[data-testid="pipeline-row"][data-name="bulk-0999"]')).to_be_visible()
    expect(page.get_by_test_id("pipeline-row")).to_have_count(1)
    page.get_by_test_id("pipeline-search").fill("")
    expect(page.locator('[data-testid="pipeline-row"][data-name="bulk-0000"]')).to_be_visible()
    page.screenshot(path=shots / "pipelines.png")


def test_the_stats_panel_and_the_run_page_show_what_steps_used(
    page: Page, ui: Cluster, shots: Path
) -> None:
    ui.apply(
        """
        name: ui-stats
        steps:
          - name: hold
            memory: 240Mi
            transform:
              code: |
                import time
                block = bytearray(200 << 20)
                time.sleep(0.3)
                result = pd.DataFrame({"n": range(7)})
          - name: nap
            needs: [hold]
            transform:
              code: |
                import time
                time.sleep(1.2)
                result = data
        """
    )
    finished = [ui.run("ui-stats"), ui.run("ui-stats")]
    stats = ui.client.pipeline_stats("ui-stats")
    assert stats.slowest_step == "nap"
    sign_in(page, ui.plane.token("viewer", name="stella"))
    page.goto("/pipelines/ui-stats")
    panel = page.get_by_test_id("stats-panel")
    expect(panel.get_by_test_id("stats-row")).to_have_count(2)
    expect(panel.get_by_test_id("stats-summary")).to_contain_text("The latest 2 finished runs")
    expect(panel.get_by_test_id("stats-slowest")).to_have_text("nap")
    nap = panel.locator('[data-testid="stats-row"][data-step="nap"]')
    expect(nap).to_have_attribute("data-slowest", "true")
    expect(nap.get_by_test_id("stats-trend")).to_have_attribute("data-points", "2")
    p50 = nap.get_by_test_id("stats-p50").inner_text()
    assert re.fullmatch(r"1\.\d s", p50), p50  # the real runs' figure, not a placeholder
    hold = panel.locator('[data-testid="stats-row"][data-step="hold"]')
    memory = hold.get_by_test_id("stats-memory").inner_text()
    assert re.search(r"of 240 MiB \(\d+%\)", memory), memory
    peak = stats.steps[0].peak_memory_bytes_max
    assert f"{peak / (1 << 20):.0f} MiB of 240 MiB" in memory
    page.get_by_test_id("stats-card").screenshot(path=str(shots / "pipeline-stats.png"))

    page.goto(f"/runs/{finished[-1].id}")
    row = page.locator('[data-testid="step-row"][data-step="hold"]')
    expect(row.get_by_test_id("step-memory")).to_contain_text("/ 240 MiB")
    cpu = page.locator('[data-testid="step-row"][data-step="nap"]').get_by_test_id("step-cpu")
    expect(cpu).not_to_have_text("—")
