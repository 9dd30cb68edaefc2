"""The Airflow UI in a real browser: Debian's Chromium, headless, driven by Playwright.

A real Airflow (API server and dag-processor as subprocesses, no scheduler) serves the
project's DAGs; the test logs in through the login form as the generated admin, finds
every DAG listed with no import error shown, opens `training` and its trigger form, and
sees the DAG's Params there. Screenshots land in `test-artifacts/browser/`.

Playwright's wheel carries its driver only: the browser is Debian's `chromium` (`.ci/run`
installs it), never one Playwright downloads. Without it, or without Playwright, the test
is skipped loudly, and fails instead when `CI_REQUIRE_SERVICES=1` (as in CI).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.io.orchestrator import API_SERVER, DAG_PROCESSOR, AirflowApi, LocalAirflow
from pipelines.settings import load_settings

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_TIMEOUT_MS = 60_000
IMPORT_ERRORS = re.compile(r"import error", re.IGNORECASE)  # "Dag Import Error(s)" button


def _project_dag_ids() -> list[str]:
    """The `dag_id`s declared in the dags folder (one DAG per file)."""
    ids = [
        match
        for path in sorted(DAGS_FOLDER.glob("*.py"))
        for match in re.findall(r"""(?<!\w)dag_id\s*=\s*["']([\w.-]+)["']""", path.read_text())
    ]
    assert ids, f"no dag_id found in {DAGS_FOLDER}"
    return sorted(ids)


def _require(available: bool, what: str) -> None:
    """Skip loudly when the browser tooling is missing; in CI (CI_REQUIRE_SERVICES=1) fail."""
    if available:
        return
    reason = f"BROWSER TEST NOT RUN: {what}"
    if os.environ.get("CI_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (CI_REQUIRE_SERVICES=1 requires it)")
    pytest.skip(reason)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    """A page of a headless Debian Chromium on a fresh, empty profile, in English."""
    _require(
        CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium",
    )
    _require(
        importlib.util.find_spec("playwright") is not None,
        "the Python package `playwright` is missing: pip install -r requirements.txt",
    )
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            locale="en-US",
            timezone_id="UTC",
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            yield page
        finally:
            context.close()


@pytest.fixture
def airflow_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AirflowApi]:
    """A real Airflow serving the project's DAGs, parsed; its REST API logged in as admin."""
    mlops_env = {"MLOPS_STATE_ROOT": str(tmp_path / "state")}
    for name, value in mlops_env.items():
        monkeypatch.setenv(name, value)
    airflow = LocalAirflow(
        load_settings(),
        mlops_env,
        components={"api-server": API_SERVER, "dag-processor": DAG_PROCESSOR},
    )
    api = AirflowApi(airflow)
    try:
        airflow.start()
        api.login()
        api.wait_until_parsed(_project_dag_ids())  # also: REST reports no import error
        yield api
    finally:
        api.close()
        survivors = airflow.stop()
    assert survivors == [], f"Airflow processes outlived stop(): {survivors}"


def _screenshot(page: Any, name: str) -> Path:
    """Save the page as it looks once its requests have settled (10 s at most)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_load_state("networkidle", timeout=10_000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def _load_checking_import_errors(page: Any, load: Any) -> None:
    """Run `load`; the import errors the page then asks the API server for are none."""
    with page.expect_response(lambda r: "/api/v2/importErrors" in r.url) as response:
        load()
    assert response.value.ok, response.value.status
    assert response.value.json()["total_entries"] == 0, response.value.json()


def _no_import_error_button(page: Any) -> None:
    """With import errors, the home page and the DAGs list show a "Dag Import Error(s)"
    button (with their count): a loaded page without one shows none."""
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name=IMPORT_ERRORS)).to_have_count(0)


def test_airflow_ui_lists_the_dags_and_shows_the_training_trigger_form(page, airflow_ui):
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    url = airflow_ui.airflow.url
    username, password = airflow_ui.admin()
    dag_ids = _project_dag_ids()
    params = _training_params(airflow_ui)
    task_ids = [t["task_id"] for t in airflow_ui.call("GET", "/dags/training/tasks")["tasks"]]
    for stale in ARTIFACTS.glob("*.png"):
        stale.unlink()
    try:
        # Given the UI, when an anonymous visitor opens it, then it asks to sign in.
        page.goto(f"{url}/")
        page.wait_for_url(re.compile(r"/auth/login"))
        expect(page.get_by_text("Sign into Airflow")).to_be_visible()
        _screenshot(page, "01-login")

        # When the admin signs in through the form, then the home page shows no import error.
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        _load_checking_import_errors(page, page.get_by_role("button", name="Sign in").click)
        assert "/auth/login" not in page.url
        expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
        expect(page.get_by_text("Failed Dags", exact=True)).to_be_visible()
        _screenshot(page, "02-home")
        _no_import_error_button(page)

        # The DAGs list shows every project DAG, and no import error badge.
        _load_checking_import_errors(page, lambda: page.goto(f"{url}/dags"))
        listed = page.get_by_test_id("dag-id")
        expect(listed).to_have_count(len(dag_ids))
        assert sorted(listed.all_inner_texts()) == dag_ids
        expect(page.get_by_text(f"{len(dag_ids)} Dags", exact=True)).to_be_visible()
        _screenshot(page, "03-dags-list")
        _no_import_error_button(page)

        # The training DAG opens from the list, with its tasks.
        listed.filter(has_text=re.compile(r"^training$")).click()
        page.wait_for_url(re.compile(r"/dags/training$"))
        expect(page.get_by_role("heading", name="training", exact=True)).to_be_visible()
        for task_id in task_ids:
            expect(page.get_by_role("link", name=task_id, exact=True)).to_be_visible()
        expect(page.get_by_role("link", name=re.compile(r"Failed Runs"))).to_be_visible()
        _screenshot(page, "04-training-dag")

        # Its trigger form shows each Param: its field, labelled with the Param's title (or
        # name), its description, and its default when that is text.
        page.get_by_role("button", name="Trigger Dag").click()
        form = page.get_by_role("dialog")
        expect(form.get_by_text("Trigger Dag - training")).to_be_visible()
        expect(form.get_by_text("Run Parameters")).to_be_visible()
        for name, (label, description, default) in params.items():
            title = page.get_by_text(re.compile(rf"^\s*{re.escape(label)}\s*\*?\s*$"))  # * required
            field = form.get_by_role("group").filter(has=title)
            expect(field, f"the field of Param {name}").to_have_count(1)
            expect(field, f"the field of Param {name}").to_be_visible()
            if description:
                expect(field.get_by_text(description, exact=True)).to_be_visible()
            if isinstance(default, str) and default:
                expect(field.get_by_role("textbox")).to_have_value(default)
        expect(form.get_by_role("button", name="Trigger", exact=True)).to_be_visible()
        _screenshot(page, "05-training-trigger-form")
        form.get_by_role("button", name="Trigger", exact=True).scroll_into_view_if_needed()
        _screenshot(page, "06-training-trigger-form-end")
    except BaseException:
        with contextlib.suppress(Exception):
            _screenshot(page, "failure")
        raise


def _training_params(api: AirflowApi) -> dict[str, tuple[str, str | None, Any]]:
    """The training DAG's Params as its form shows them: {name: (label, description, default)}.

    As the running Airflow parsed them from `dags/training.py`; the label is the title, else
    the name.
    """
    params = api.call("GET", "/dags/training/details")["params"]
    assert params, "the training DAG declares no Params"
    return {
        name: (param["schema"].get("title") or name, param.get("description"), param.get("value"))
        for name, param in params.items()
    }
