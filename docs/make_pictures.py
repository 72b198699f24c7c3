"""Regenerate the README's pictures: a report figure and a dashboard screenshot.

    python docs/make_pictures.py                  # about 2 minutes on 2 CPU cores
    python docs/make_pictures.py --trials 100 --epochs 10000

Runs a search into a temporary folder, draws its report, writes its dashboard notes, serves
optuna-dashboard on 127.0.0.1 and photographs the baseline trial's page in headless Chromium
(Debian's ``chromium``, driven by ``playwright``). Writes docs/report_learning_curves.png and
docs/dashboard_baseline_trial.png. Needs the project installed (``pip install -e ".[dev]"``).
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import optuna
from playwright.sync_api import sync_playwright

from search import cli, run
from search.dashboard import serve_dashboard, write_notes
from search.report import write_report
from search.storage import locate_storage
from search.summary import baseline_trial

DOCS = Path(__file__).resolve().parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]


def screenshot_baseline_trial(base_url: str, study: optuna.Study, path: Path) -> Path:
    """Photograph the dashboard's page of the baseline trial once its fit plot has loaded."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is not installed: apt-get install -y chromium")
    baseline = baseline_trial(study)
    assert baseline is not None, "every study of search.run has a baseline"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1360})
        page.goto(
            f"{base_url}/dashboard/studies/{study._study_id}/trials?numbers={baseline.number}"
        )
        image = page.locator("img[alt='fit.png']")
        image.wait_for()
        page.wait_for_function(
            "image => image.complete && image.naturalWidth > 0", arg=image.element_handle()
        )
        page.screenshot(path=str(path))
        browser.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--trials", type=cli.positive_int, default=30, help="trials to run")
    parser.add_argument("--epochs", type=cli.positive_int, default=3000, help="epochs per trial")
    parser.add_argument("--out", type=Path, default=DOCS, help="where the pictures go")
    args = parser.parse_args()
    cli.configure_logging()

    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'ann.db'}"
        search_args = ["--trials", str(args.trials), "--epochs", str(args.epochs)]
        if cli.invoke(run.main, [*search_args, "--report-every", "50", "--storage", url]):
            raise SystemExit("the search failed; see above")
        location = locate_storage(url, must_exist=True)
        study = optuna.load_study(study_name="ann", storage=url)
        store = optuna.artifacts.FileSystemArtifactStore(str(location.artifact_dir))

        report = write_report(study, Path(folder) / "report", artifact_store=store)
        figure = args.out / "report_learning_curves.png"
        shutil.copyfile(Path(folder) / "report" / "learning_curves.png", figure)
        write_notes(study, location)
        with serve_dashboard(location, Path(folder) / "dashboard.log") as base_url:
            screenshot = args.out / "dashboard_baseline_trial.png"
            screenshot_baseline_trial(base_url, study, screenshot)

    print(f"wrote {figure} and {screenshot}")
    for name, reason in report.skipped.items():
        print(f"(the report skipped {name}: {reason})")


if __name__ == "__main__":
    main()
