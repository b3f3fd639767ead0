"""The Dagster UI as a user sees it: `dagster dev` on a free port, driven by headless Chromium (Debian's
`chromium` package) through Playwright. Every asset and group is on the asset graph, an asset page shows
its description, the daemon builds a new source's partition by itself (sensor + on_missing), and a
materialization launched from the UI runs to success. Screenshots go to the test's temp folder, or to
docs/ (which the README shows) with UPDATE_SCREENSHOTS=1.

Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). Without it the test is
skipped, unless FASTAPPLY_REQUIRE_BROWSER=1 (set by .ci/run), where it fails.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from fastapply_pipeline_tests.helpers import DAGSTER, base_settings, write_config
from fastapply_pipeline_tests.test_automation import small_repo

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ASSETS = [
    "cloned_repo",
    "code_snippets",
    "anthropic_triples",
    "openai_triples",
    "edit_triples",
    "fastapply_dataset",
    "rejected_triples",
    "lora_adapter",
    "eval_scores",
]
GROUPS = ["sources", "snippets", "triples", "dataset", "training", "eval"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if os.environ.get("FASTAPPLY_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    browser = chromium()
    work = tmp_path_factory.mktemp("ui")
    source = small_repo(work, "demo-repo")
    config = write_config(work / "fastapply.yaml", base_settings(work, [{"path": source, "name": "demo"}]))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "FASTAPPLY_CONFIG": str(config), "FASTAPPLY_ENV": "local"}
    log = (work / "dagster-dev.log").open("wb")
    command = [DAGSTER, "dev", "-m", "fastapply_pipeline.definitions", "-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            log.close()
            pytest.fail(f"dagster dev did not come up: {(work / 'dagster-dev.log').read_text()[-3000:]}")
        time.sleep(1)
    yield url, browser, home
    os.killpg(process.pid, signal.SIGTERM)
    try:
        # alone it stops in ~3 s; beside the other tests it sometimes hung for the whole wait (60 s before).
        # A prompt stop on SIGTERM is test_cli_errors.py's test_ui_stops_promptly_on_sigterm's to check.
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    log.close()


def dismiss_welcome(page) -> None:
    """The first visit shows Dagster's welcome dialog (community links); skip it."""
    with contextlib.suppress(Exception):  # Playwright's TimeoutError: no dialog this time
        page.get_by_role("button", name="Skip").first.click(timeout=5_000)


def wait_for(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_the_asset_graph_automation_and_a_launch_from_the_ui(dagster_dev, tmp_path, monkeypatch):
    import dagster as dg
    from playwright.sync_api import expect, sync_playwright

    url, browser_path, home = dagster_dev
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance's dagster.yaml reads it
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    shots.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1800, "height": 1100})
        page.goto(f"{url}/asset-groups", wait_until="networkidle")
        dismiss_welcome(page)
        for group in GROUPS:  # the global lineage starts with every group collapsed
            expect(page.get_by_text(group, exact=True).first).to_be_visible(timeout=60_000)
        page.locator("body").click(position={"x": 1100, "y": 700})  # focus the graph
        page.keyboard.press("Alt+KeyE")  # the graph's "Expand all groups" shortcut
        for name in ASSETS:
            expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(shots / "ui-asset-graph.png"))

        # An asset page shows its description and owner.
        page.goto(f"{url}/assets/eval_scores", wait_until="networkidle")
        dismiss_welcome(page)
        expect(page.get_by_text("merges the test split").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("fastapply", exact=True).first).to_be_visible(
            timeout=30_000
        )  # owner team:fastapply

        # The daemon at work: the sensor registers the new source, on_missing builds its partition.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            wait_for(
                "the automation to build edit_triples[demo]",
                lambda: "demo" in instance.get_materialized_partitions(dg.AssetKey("edit_triples")),
                timeout=240,
            )

            # A materialization launched from the UI: fastapply_dataset from its asset page.
            page.goto(f"{url}/assets/fastapply_dataset", wait_until="networkidle")
            dismiss_welcome(page)
            page.get_by_role("button").filter(has_text=re.compile(r"^\s*Materialize\s*$")).first.click()
            # fastapply_dataset and rejected_triples are one multi-asset: the UI asks to confirm both.
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("rejected_triples")).to_be_visible(timeout=30_000)
            dialog.get_by_role("button", name="Confirm").click()
            dataset = dg.AssetKey("fastapply_dataset")
            event = wait_for(
                "the launched fastapply_dataset run to succeed",
                lambda: instance.get_latest_materialization_event(dataset),
                timeout=180,
            )
            run = wait_for(
                "the run to finish",
                lambda: (r := instance.get_run_by_id(event.run_id)).is_finished and r,
                timeout=120,
            )
            assert run.status == dg.DagsterRunStatus.SUCCESS and "fastapply/cli" not in run.tags
        page.goto(f"{url}/assets/fastapply_dataset", wait_until="networkidle")
        dismiss_welcome(page)
        expect(page.get_by_text("split_by").first).to_be_visible(timeout=30_000)  # metadata renders
        page.screenshot(path=str(shots / "ui-dataset.png"), full_page=True)
        browser.close()
    assert (shots / "ui-asset-graph.png").stat().st_size > 10_000
