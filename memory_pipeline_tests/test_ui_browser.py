"""The Dagster UI as an operator uses it, in a real (headless) Chromium against `memory-pipeline up`.

Two tenants whose ids hold a space and a '/' get memories; once the sensor has embedded them,
the tests read what the pages show: the asset graph's flow, the partition filter finding a tenant
by user id, a tenant materialized by clicking, "Execute all" on the checks, and a partition that
is no tenant's. Screenshots and the measured times go to ``test-artifacts/ui/`` (gitignored).

Debian's chromium (``/usr/bin/chromium``, installed by the Makefile) is driven by playwright
with ``executable_path``; no browser is downloaded. Every request not to 127.0.0.1 is blocked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from memory_pipeline.local_services import ensure_services
from memory_pipeline.local_services.local_chroma import _free_port
from memory_pipeline.memory_store import MemoryStore
from memory_pipeline.settings import Settings
from memory_pipeline.tenancy import Tenant
from memory_pipeline_bench.browser import CHROMIUM, launch_chromium, local_context
from memory_pipeline_tests.fault_harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "ui"
#: Deadlines for a loaded 2-core machine; the conditions usually hold far sooner.
READY_SECONDS = 240
EMBED_SECONDS = 300
RUN_SECONDS = 300
PAGE_SECONDS = 60

ANN = Tenant("ann lee", "notes/2026")  # a space in the user id, a '/' in the project id
BOB = Tenant("bob", "q3, plans")  # a ',' (the UI's list separator) in the project id


@dataclass
class Ui:
    """A running `up` home and what the tests measured on it."""

    base_url: str
    home: Path
    settings: Settings
    inserted_at: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def ui() -> Iterator[Ui]:
    """`memory-pipeline up` on a fresh home with two tenants' memories embedded by the sensor."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="mpw-", dir="/tmp"))  # short: Unix socket paths
    port = _free_port("127.0.0.1")
    env = {**os.environ, "MEMORY_PIPELINE_HOME": str(home)}
    for name in ("MEMORY_PIPELINE_DATABASE_URL", "MEMORY_PIPELINE_CHROMA_HOST", "DAGSTER_HOME"):
        env.pop(name, None)
    log = open(ARTIFACTS / "up.log", "w")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        [sys.executable, "-m", "memory_pipeline.cli", "up", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ui = Ui(f"http://127.0.0.1:{port}", home, Settings(home=home))
    started = time.monotonic()
    try:
        wait_for(
            lambda: proc.poll() is None and _answers(ui.url("/server_info")),
            READY_SECONDS,
            f"the UI answering (see {ARTIFACTS / 'up.log'})",
            interval=0.5,
        )
        ui.timings["up_to_ui_answering_s"] = time.monotonic() - started
        with MemoryStore(ui.settings, ensure_services(ui.settings)) as store:
            ui.inserted_at = inserted = time.monotonic()
            ids = [
                store.create_memory_log(ANN.user_id, ANN.project_id, {"content": text})
                for text in ("sailing on Sunday", "the boat needs new sails", "lunch with Kim")
            ]
            ids.append(store.create_memory_log(ANN.user_id, ANN.project_id, {}))  # skipped
            ids += [
                store.create_memory_log(BOB.user_id, BOB.project_id, {"content": text})
                for text in ("quarterly plan draft", "hiring plan for Q3")
            ]
            states = store.wait_until_embedded(ids, timeout=EMBED_SECONDS)
            ui.timings["insert_to_embedded_by_sensor_s"] = time.monotonic() - inserted
        assert sorted(states.values()) == ["embedded"] * 5 + ["skipped"]
        yield ui
    finally:
        descendants = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
        psutil.wait_procs(descendants, timeout=30)
        log.close()
        shutil.rmtree(home, ignore_errors=True)
        (ARTIFACTS / "timings.json").write_text(json.dumps(ui.timings, indent=2) + "\n")


@pytest.fixture(scope="module")
def browser(ui: Ui):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui: Ui):
    context = local_context(browser, PAGE_SECONDS)
    page = context.new_page()
    yield page
    context.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _open_partition_dialog(page, ui: Ui):
    """The asset's Materialize dialog, on its partitions tab."""
    page.goto(ui.url("/assets/tenant_memory_vectors?view=partitions"))
    page.get_by_role("button", name="Materialize…").click()
    return page.get_by_role("dialog").filter(has_text="Launch runs to materialize")


def _launch_and_open_run(page, ui: Ui, button) -> float:
    """Click a launch button, follow the toast's link to the run; return when it was clicked."""
    clicked = time.monotonic()
    button.click()
    view = page.get_by_role("link", name="View", exact=True)
    view.wait_for()
    page.goto(ui.url(view.get_attribute("href")))
    return clicked


def _node_x(page, asset: str) -> float:
    node = page.locator("foreignObject", has=page.locator(f'[data-tooltip="{asset}"]'))
    box = node.first.bounding_box()
    assert box, f"the graph shows no node {asset}"
    return box["x"]


def test_the_partition_filter_finds_a_tenant_by_its_user_id(page, ui):
    page.goto(ui.url("/assets/tenant_memory_vectors?view=partitions"))
    page.get_by_text("Materialized (2)").wait_for(timeout=RUN_SECONDS * 1000)
    ui.timings.setdefault(
        "insert_to_partitions_materialized_in_ui_s", time.monotonic() - ui.inserted_at
    )
    page.get_by_text(BOB.partition_key).first.wait_for()  # 'bob/q3%2C plans'

    page.get_by_placeholder("Filter by name…").fill(ANN.user_id)

    page.get_by_text(ANN.partition_key).first.wait_for()  # 'ann lee/notes%2F2026'
    page.get_by_text(BOB.partition_key).first.wait_for(state="hidden")
    page.get_by_text(ANN.partition_key).first.click()
    page.get_by_text("total_embedded").first.wait_for()  # the tenant's totals
    page.get_by_text("not_embedded_memories").first.wait_for()  # its skipped memory, with why
    _shot(page, "tenant-partition")


def test_the_asset_graph_shows_memory_log_flowing_into_vectors_then_the_directory(page, ui):
    page.goto(ui.url("/asset-groups"))
    page.get_by_text("2 partitions").first.wait_for()  # the vectors' node, loaded

    # upstream assets are laid out to the left of what they feed
    assert _node_x(page, "memory_log") < _node_x(page, "tenant_memory_vectors")
    assert _node_x(page, "tenant_memory_vectors") < _node_x(page, "memory_tenants")
    _shot(page, "asset-graph")

    page.goto(ui.url("/assets/tenant_memory_vectors?view=overview"))
    lineage = page.get_by_text("Upstream assets").locator("..")
    lineage.get_by_text("memory_log").first.wait_for()
    page.get_by_text("Downstream assets").locator("..").get_by_text(
        "memory_tenants"
    ).first.wait_for()


def test_materializing_one_tenant_by_clicking_succeeds(page, ui):
    dialog = _open_partition_dialog(page, ui)
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_placeholder("Filter partitions").fill(BOB.user_id)
    page.get_by_role("menuitem").filter(has_text=BOB.partition_key).click()
    page.keyboard.press("Escape")

    clicked = _launch_and_open_run(page, ui, dialog.get_by_role("button", name="Launch 1 run"))

    page.get_by_text("Success", exact=True).first.wait_for(timeout=RUN_SECONDS * 1000)
    ui.timings["click_materialize_to_success_s"] = time.monotonic() - clicked
    page.get_by_text(f"partition: {BOB.partition_key}").first.wait_for()
    _shot(page, "tenant-run")


def test_execute_all_runs_every_check_on_every_tenant_and_they_pass(page, ui):
    page.goto(ui.url("/assets/tenant_memory_vectors?view=checks"))

    clicked = _launch_and_open_run(page, ui, page.get_by_role("button", name="Execute all"))

    page.get_by_text("Success", exact=True).first.wait_for(timeout=RUN_SECONDS * 1000)
    ui.timings["click_execute_all_checks_to_success_s"] = time.monotonic() - clicked
    page.goto(ui.url("/assets/tenant_memory_vectors?view=checks"))
    for check in (
        "no_failed_or_dead_memories",
        "nothing_stuck_pending",
        "postgres_and_chroma_agree",
    ):
        page.get_by_text(check).first.wait_for()
    page.get_by_text("Succeeded", exact=True).nth(2).wait_for()  # all three
    page.get_by_text("no_failed_or_dead_memories").first.click()
    page.get_by_text("in 2 tenant(s)").first.wait_for()  # reported per tenant
    page.get_by_text("per_tenant").first.wait_for()
    _shot(page, "checks")


def test_a_partition_that_is_no_tenant_fails_clearly(page, ui):
    dialog = _open_partition_dialog(page, ui)
    dialog.get_by_role("button", name="Add a partition").click()
    add = page.get_by_role("dialog").filter(has_text="Add a partition for tenants")
    add.get_by_role("textbox").fill("alice")
    add.get_by_role("button", name="Save").click()

    clicked = _launch_and_open_run(page, ui, dialog.get_by_role("button", name="Launch 1 run"))

    page.get_by_text("Failure", exact=True).first.wait_for(timeout=RUN_SECONDS * 1000)
    ui.timings["click_phantom_to_failure_s"] = time.monotonic() - clicked
    page.get_by_text("name no tenant; nothing was done").first.wait_for()
    _shot(page, "phantom-refused")
