"""search.reproduce retrains stored trials to the same validation L1."""

import json

import optuna

from search import reproduce, run
from search.cli import invoke
from tests.conftest import QUICK, run_module


def test_baseline_and_best_trial_reproduce_exactly(workdir, capsys):
    assert invoke(run.main, ["--trials", "3", *QUICK, "--pruner", "none"]) == 0
    study = optuna.load_study(study_name="ann", storage="sqlite:///studies/ann.db")
    capsys.readouterr()

    for number in (0, study.best_trial.number):
        assert invoke(reproduce.main, ["--trial", str(number), "--json"]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["match"] is True
        assert result["reproduced_val_l1"] == result["stored_val_l1"]
        assert result["stored_val_l1"] == study.trials[number].value
        assert (
            workdir / "studies" / "reproduced" / "ann" / f"trial-{number}" / "fit.png"
        ).exists()


def test_a_pruned_trial_reproduces_its_last_report(workdir, capsys):
    # With 4 trials at once, the median pruner has its 5 finished trials while 7 still run.
    args = ["--trials", "12", "--epochs", "100", "--report-every", "10", "--sampler", "random"]
    assert invoke(run.main, [*args, "--population", "4"]) == 0
    study = optuna.load_study(study_name="ann", storage="sqlite:///studies/ann.db")
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the median pruner should prune some of 12 random trials"
    capsys.readouterr()

    assert invoke(reproduce.main, ["--trial", str(pruned[0].number), "--json"]) == 0

    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["epochs"] == pruned[0].user_attrs["epochs_run"]
    assert result["reproduced_val_l1"] == pruned[0].intermediate_values[result["epochs"]]


def test_reproduce_from_the_shell_prints_stored_and_reproduced_values(workdir):
    assert invoke(run.main, ["--trials", "1", *QUICK]) == 0

    completed = run_module("search.reproduce", "--trial", "0", cwd=workdir)

    assert completed.returncode == 0, completed.stderr
    assert "stored validation L1" in completed.stdout
    assert "reproduced validation L1" in completed.stdout
    assert "match                     yes" in completed.stdout
