"""search.report draws a study's figures from the study and its artifacts, without retraining."""

from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pytest
import torch
from matplotlib.figure import Figure
from optuna_dashboard import get_note

from ann.data import make_data
from search import report, run
from search.cli import invoke
from search.study import stored_settings
from tests.conftest import QUICK, run_module

FIGURES = ("history.png", "learning_curves.png", "param_importances.png", "slice.png", "fit.png")
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def make_study(folder: Path, n_trials: int) -> str:
    """Run a quick search into ``folder``/ann.db and return its storage URL."""
    url = f"sqlite:///{folder / 'ann.db'}"
    args = ["--trials", str(n_trials), *QUICK, "--pruner", "none", "--storage", url]
    assert invoke(run.main, args) == 0
    return url


@pytest.fixture(scope="module")
def storage_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A study of 3 completed trials, shared by the tests that only read it."""
    return make_study(tmp_path_factory.mktemp("study"), n_trials=3)


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_HEADER, f"{path} is not a PNG file"


def test_report_draws_every_figure_and_leaves_no_figure_open(storage_url, tmp_path, capsys):
    capsys.readouterr()

    code = invoke(report.main, ["--storage", storage_url, "--out", str(tmp_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == f"report of study 'ann': 5 figures in {tmp_path}"
    for name in FIGURES:
        assert_png(tmp_path / name)
        assert f"  {tmp_path / name}" in out.splitlines()
    assert "skipped" not in out
    assert plt.get_fignums() == []


def test_report_goes_beside_the_study_file_and_refreshes_the_note(storage_url, capsys):
    folder = Path(storage_url.removeprefix("sqlite:///")).parent
    study = optuna.load_study(study_name="ann", storage=storage_url)

    assert invoke(report.main, ["--storage", storage_url]) == 0

    assert f"5 figures in {folder / 'report' / 'ann'}" in capsys.readouterr().out
    assert_png(folder / "report" / "ann" / "history.png")
    assert "**Noise floor**" in get_note(study)


def test_importances_are_skipped_until_two_trials_completed(tmp_path, capsys):
    url = make_study(tmp_path, n_trials=1)
    capsys.readouterr()

    assert invoke(report.main, ["--storage", url, "--out", str(tmp_path / "report")]) == 0

    out = capsys.readouterr().out
    assert "4 figures" in out.splitlines()[0]
    assert "  skipped param_importances.png: needs 2 completed trials, found 1" in out
    assert not (tmp_path / "report" / "param_importances.png").exists()
    assert_png(tmp_path / "report" / "fit.png")


def test_a_failing_plot_is_skipped_and_the_others_still_drawn(
    storage_url, tmp_path, monkeypatch, caplog
):
    def broken(study: optuna.Study) -> None:
        raise ValueError("degenerate study")

    monkeypatch.setattr(report, "importances_figure", broken)
    study = optuna.load_study(study_name="ann", storage=storage_url)

    written = report.write_report(study, tmp_path, artifact_store=None)

    assert written.skipped == {
        "param_importances.png": "ValueError: degenerate study",
        "fit.png": "no artifact store to load weights from",
    }
    assert [path.name for path in written.figures] == [
        "history.png",
        "learning_curves.png",
        "slice.png",
    ]
    assert "skipped param_importances.png: ValueError: degenerate study" in caplog.text
    assert plt.get_fignums() == []


def test_a_full_disk_skips_the_figures_without_failing(storage_url, tmp_path, monkeypatch):
    def full_disk(self, path, **kwargs) -> None:
        Path(path).write_bytes(b"half a PNG")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    study = optuna.load_study(study_name="ann", storage=storage_url)

    written = report.write_report(study, tmp_path, artifact_store=None)

    assert written.figures == []
    assert set(written.skipped.values()) == {
        "OSError: [Errno 28] No space left on device",
        "no artifact store to load weights from",
    }
    assert list(tmp_path.iterdir()) == []


def test_a_report_folder_that_cannot_be_made_is_skipped_without_failing(storage_url, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    study = optuna.load_study(study_name="ann", storage=storage_url)

    written = report.write_report(study, tmp_path / "taken" / "report", artifact_store=None)

    assert written.figures == []
    assert list(written.skipped) == ["all figures"]


def test_the_fit_uses_the_stored_weights_that_scored_the_stored_value(storage_url):
    study = optuna.load_study(study_name="ann", storage=storage_url)
    artifact_dir = Path(storage_url.removeprefix("sqlite:///")).parent / "artifacts"
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    data = make_data(stored_settings(study).seed)[0]

    for trial in (study.trials[0], study.best_trial):
        model = report.load_trial_model(study, trial, store)
        assert model is not None
        with torch.no_grad():
            val_l1 = torch.nn.functional.l1_loss(model(data.x_val), data.y_val).item()
        assert val_l1 == pytest.approx(trial.value, rel=1e-6)


def test_report_of_a_missing_study_file_is_refused_without_creating_it(workdir, capsys):
    code = invoke(report.main, ["--storage", "sqlite:///nowhere/ann.db"])

    assert code == 2
    assert capsys.readouterr().err.startswith("error: no study file at nowhere/ann.db")
    assert list(workdir.iterdir()) == []


def test_report_of_an_unknown_study_names_the_studies_there(storage_url, capsys):
    code = invoke(report.main, ["--storage", storage_url, "--study", "nope"])

    assert code == 2
    assert capsys.readouterr().err == (
        "error: no study named 'nope' in this storage (studies: ann)\n"
    )


def test_report_from_the_shell_uses_no_window_system(storage_url, tmp_path):
    completed = run_module(
        "search.report", "--storage", storage_url, "--out", str(tmp_path), cwd=tmp_path
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    assert_png(tmp_path / "slice.png")


def test_run_ends_with_the_report_and_the_dashboard_notes(workdir, capsys):
    assert invoke(run.main, ["--trials", "2", *QUICK]) == 0

    out = capsys.readouterr().out
    folder = Path("studies") / "report" / "ann"
    assert f"Report: {folder}" in out
    assert_png(workdir / folder / "learning_curves.png")
    study = optuna.load_study(study_name="ann", storage="sqlite:///studies/ann.db")
    assert "**Best**" in get_note(study)
