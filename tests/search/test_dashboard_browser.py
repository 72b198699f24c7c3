"""optuna-dashboard in a real browser: headless Chromium over a study that search.run made.

Needs Debian's Chromium (``apt-get install -y chromium``; .ci/run installs it) and the
``playwright`` package, which drives that Chromium (never ``playwright install``: no browser
is downloaded). The screenshot of the baseline trial's page is saved in the test's temporary
folder as ``dashboard_baseline_trial.png``.
"""

import json
import shutil
import urllib.request
from collections.abc import Iterator
from typing import Any

import optuna
import pytest

from search import run
from search.cli import invoke
from search.dashboard import serve_dashboard, write_notes
from search.storage import locate_storage
from tests.conftest import QUICK

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


def find_chromium() -> str:
    """Chromium's path, or a failure that says how to install it (this test never skips)."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    pytest.fail(
        "Chromium is not installed: apt-get install -y chromium (.ci/run does); "
        "the dashboard is checked in a real browser",
        pytrace=False,
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, optuna.Study]]:
    """optuna-dashboard over a 3-trial study with notes; yields its URL and the study."""
    folder = tmp_path_factory.mktemp("study")
    url = f"sqlite:///{folder / 'ann.db'}"
    assert invoke(run.main, ["--trials", "3", *QUICK, "--pruner", "none", "--storage", url]) == 0
    location = locate_storage(url, must_exist=True)
    study = optuna.load_study(study_name="ann", storage=url)
    write_notes(study, location)

    with serve_dashboard(location, folder / "dashboard.log") as base_url:
        yield base_url, study


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    """A page of headless Chromium, driven by playwright (before any study is made)."""
    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'", pytrace=False)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        browser_page = browser.new_page(viewport={"width": 1400, "height": 1000})
        browser_page.set_default_timeout(TIMEOUT_MS)
        yield browser_page
        browser.close()


def study_id(base_url: str) -> int:
    summaries = get_json(f"{base_url}/api/studies")["study_summaries"]
    return next(s["study_id"] for s in summaries if s["study_name"] == "ann")


def test_the_trial_list_shows_every_trial_with_its_state(page, served):
    base_url, study = served

    page.goto(f"{base_url}/dashboard/studies/{study_id(base_url)}/trials")
    page.get_by_text(f"Trial {len(study.trials) - 1}", exact=True).wait_for()

    items = [text for text in page.locator("li").all_inner_texts() if text.startswith("Trial ")]
    assert [item.splitlines()[:2] for item in items] == [
        [f"Trial {trial.number}", trial.state.name.capitalize()] for trial in study.trials
    ]


def test_the_baseline_trial_shows_its_note_and_its_fit_plot(page, served, tmp_path):
    base_url, _ = served
    sid = study_id(base_url)
    baseline = next(
        t for t in get_json(f"{base_url}/api/studies/{sid}")["trials"] if t["number"] == 0
    )

    page.goto(f"{base_url}/dashboard/studies/{sid}/trials?numbers=0")
    page.get_by_text("The tutorial's baseline", exact=True).wait_for()
    image = page.locator("img[alt='fit.png']")
    image.wait_for()
    page.wait_for_function(
        "image => image.complete && image.naturalWidth > 0", arg=image.element_handle()
    )

    source = image.get_attribute("src") or ""
    assert source.startswith(f"/artifacts/{sid}/{baseline['trial_id']}/")
    response = page.request.get(f"{base_url}{source}")
    assert response.headers["content-type"] == "image/png"
    assert response.body()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.evaluate("image => image.naturalWidth") == 600

    screenshot = tmp_path / "dashboard_baseline_trial.png"
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000


def test_the_study_note_tells_the_story(page, served):
    base_url, study = served

    page.goto(f"{base_url}/dashboard/studies/{study_id(base_url)}/note")
    page.get_by_text("Study ann: a small ReLU MLP fits y = x^2 + 3").wait_for()

    text = page.locator("main").inner_text()
    assert "Noise floor" in text
    assert f"python -m search.reproduce --trial {study.best_trial.number}" in text
