"""The objective driven through real studies: values, user attrs, pruning, divergence."""

import multiprocessing

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.objective import Objective
from search.study import StudySettings, open_study
from search.worker import TrialBudget, run_trials

SETTINGS = StudySettings(seed=0, epochs=200, report_every=20)
GOOD = {"n_layers": 2, "n_units_l0": 16, "n_units_l1": 16, "lr": 0.02, "optimizer": "Adam"}
SLOW = {"n_layers": 1, "n_units_l0": 2, "lr": 1e-4, "optimizer": "SGD"}


def run(study, n_trials, store=None, settings=SETTINGS):
    budget = TrialBudget(n_trials, None, multiprocessing.get_context("spawn"))
    run_trials(study, Objective(settings, torch.device("cpu"), store), budget)


def test_completed_trial_stores_value_reports_and_user_attrs():
    study = optuna.create_study()
    study.enqueue_trial(GOOD)

    run(study, 1)

    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == list(range(20, 201, 20))
    assert trial.value == trial.intermediate_values[200]
    assert trial.user_attrs["epochs_run"] == 200
    assert trial.user_attrs["seed"] == SETTINGS.trial_seed(0)
    assert trial.user_attrs["device"] == "cpu"
    assert trial.user_attrs["final_train_l1"] > 0
    assert trial.user_attrs["seconds"] > 0
    assert 0.7 < trial.user_attrs["noise_floor_l1"] < 0.9


def test_a_trial_worse_than_the_median_is_pruned_and_keeps_its_curve():
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = optuna.create_study(pruner=pruner)
    study.enqueue_trial(GOOD)
    study.enqueue_trial(SLOW)

    run(study, 2)

    slow = study.trials[1]
    assert slow.state == TrialState.PRUNED
    assert slow.user_attrs["epochs_run"] == 20
    assert list(slow.intermediate_values) == [20]
    assert slow.intermediate_values[20] > study.trials[0].intermediate_values[20]


def test_a_diverging_trial_fails_with_its_reason_and_the_search_goes_on():
    study = optuna.create_study()
    with pytest.warns(UserWarning, match="out of range"):
        study.enqueue_trial({**GOOD, "lr": 1e30})
        study.enqueue_trial(GOOD)
        run(study, 2)

    diverged, next_trial = study.trials
    assert diverged.state == TrialState.FAIL
    assert "not finite" in diverged.user_attrs["fail_reason"]
    assert next_trial.state == TrialState.COMPLETE


def test_same_trial_number_and_seed_give_the_same_value_in_two_studies():
    values = []
    for _ in range(2):
        study = optuna.create_study()
        study.enqueue_trial(GOOD)
        run(study, 1)
        values.append(study.trials[0].value)

    assert values[0] == values[1]


def test_completed_trial_uploads_fit_loss_curve_and_weights(tmp_path):
    store = optuna.artifacts.FileSystemArtifactStore(str(tmp_path))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study, settings, _ = open_study(storage, "s", seed=0, epochs=40, report_every=20)

    run(study, 1, store, settings)

    metas = optuna.artifacts.get_all_artifact_meta(study.trials[0], storage=storage)
    assert sorted(meta.filename for meta in metas) == ["fit.png", "loss_curve.png", "weights.pt"]
    weights_meta = next(meta for meta in metas if meta.filename == "weights.pt")
    state = torch.load(tmp_path / weights_meta.artifact_id, weights_only=True)
    assert state["0.weight"].shape == (6, 1)
