"""search.run end to end on temporary SQLite studies: baseline, budget, resume, artifacts."""

import json
from pathlib import Path

import optuna
import pytest

from search import run
from search.cli import invoke
from tests.conftest import QUICK, run_module

STORAGE = "sqlite:///studies/ann.db"


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def load(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name="ann", storage=f"sqlite:///{folder / 'studies/ann.db'}")


def test_new_study_runs_the_baseline_first_and_counts_it_in_the_trials(workdir):
    completed = run_module("search.run", "--trials", "4", *QUICK, "--json", cwd=workdir)

    assert completed.returncode == 0, completed.stderr
    summary = last_json(completed.stdout)
    assert summary["n_trials"] == 4
    assert summary["baseline"]["number"] == 0
    assert summary["baseline"]["params"] == {
        "n_layers": 3,
        "n_units_l0": 6,
        "n_units_l1": 10,
        "n_units_l2": 6,
        "lr": 0.002,
        "optimizer": "SGD",
    }
    assert summary["best"]["value"] <= summary["baseline"]["value"]
    assert summary["dashboard_command"] == (
        "optuna-dashboard sqlite:///studies/ann.db --artifact-dir studies/artifacts "
        "--host 127.0.0.1"
    )
    for line in ("baseline (trial 0)", "Noise floor", "Trials: 4", "Browse: optuna-dashboard"):
        assert line in completed.stdout
    assert "progress: 4/4 trials finished" in completed.stderr
    assert "Trial 1 finished" not in completed.stderr

    study = load(workdir)
    assert [t.user_attrs.get("baseline", False) for t in study.trials] == [True] + [False] * 3


def test_resume_adds_trials_without_a_second_baseline(workdir):
    assert invoke(run.main, ["--trials", "2", *QUICK, "--sampler", "random"]) == 0
    assert invoke(run.main, ["--trials", "3", "--sampler", "random"]) == 0

    study = load(workdir)
    assert len(study.trials) == 5
    assert sum(bool(t.user_attrs.get("baseline")) for t in study.trials) == 1
    assert len({t.user_attrs["seed"] for t in study.trials}) == 5
    assert all(t.user_attrs["epochs_run"] <= 60 for t in study.trials)


def test_completed_trials_have_their_artifacts_on_disk(workdir):
    assert invoke(run.main, ["--trials", "3", *QUICK, "--pruner", "none"]) == 0

    study = load(workdir)
    for trial in study.trials:
        metas = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
        assert sorted(m.filename for m in metas) == ["fit.png", "loss_curve.png", "weights.pt"]
        for meta in metas:
            assert (workdir / "studies" / "artifacts" / meta.artifact_id).stat().st_size > 0


def test_timeout_stops_starting_new_trials(workdir):
    args = ["--trials", "1000", "--epochs", "2000", "--report-every", "500", "--timeout", "3"]

    assert invoke(run.main, args) == 0

    assert 1 <= len(load(workdir).trials) < 50


@pytest.mark.parametrize("pruner", ["median", "hyperband", "none"])
def test_every_pruner_runs(workdir, pruner):
    assert invoke(run.main, ["--trials", "2", *QUICK, "--pruner", pruner]) == 0

    assert len(load(workdir).trials) == 2


def test_a_custom_storage_path_and_study_name_are_used(workdir):
    args = ["--trials", "1", *QUICK, "--storage", "sqlite:///elsewhere/x.db", "--study", "mine"]

    assert invoke(run.main, args) == 0

    assert optuna.get_all_study_names(f"sqlite:///{workdir / 'elsewhere/x.db'}") == ["mine"]
    assert (workdir / "elsewhere" / "artifacts").is_dir()
    assert not (workdir / "studies").exists()
