"""The dashboard's notes tell the study's story, and serve_dashboard runs the summary's command."""

import json
import shlex
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna_dashboard import get_note

from search import reproduce, run
from search.cli import invoke
from search.dashboard import reproduce_command, serve_dashboard, study_note, write_notes
from search.storage import StorageLocation, locate_storage
from search.summary import baseline_trial, dashboard_command
from tests.conftest import QUICK


@pytest.fixture(scope="module")
def location(tmp_path_factory: pytest.TempPathFactory) -> StorageLocation:
    """A study of 3 completed trials with its notes written."""
    url = f"sqlite:///{tmp_path_factory.mktemp('study') / 'ann.db'}"
    assert invoke(run.main, ["--trials", "3", *QUICK, "--pruner", "none", "--storage", url]) == 0
    located = locate_storage(url, must_exist=True)
    write_notes(optuna.load_study(study_name="ann", storage=url), located)
    return located


def load(location: StorageLocation) -> optuna.Study:
    return optuna.load_study(study_name="ann", storage=location.url)


def test_study_note_tells_data_baseline_noise_floor_and_best(location):
    study = load(location)
    note = get_note(study)

    noise_floor = study.trials[0].user_attrs["noise_floor_l1"]
    assert note.startswith("## Study ann: a small ReLU MLP fits y = x^2 + 3\n")
    assert "1,000 training points, x uniform on [-15, 15]" in note
    assert "for 60 epochs and reports validation L1 every 20 epochs" in note
    assert f"**Noise floor**: {noise_floor:.4f}" in note
    assert f"trial 0](/dashboard/studies/{study._study_id}/trials?numbers=0)" in note
    assert f"6-10-6 SGD lr=0.002: validation L1 **{study.trials[0].value:.4f}**" in note
    assert f"**Best**: [trial {study.best_trial.number}]" in note
    assert "**Trials**: 3 (3 complete)." in note
    assert f"`optuna-dashboard {location.url} --artifact-dir" in note


def test_the_notes_reproduce_command_reproduces_the_best_trial(location, workdir, capsys):
    study = load(location)
    command = reproduce_command("ann", location, study.best_trial.number)
    assert f"`{command}`" in get_note(study)
    capsys.readouterr()

    args = shlex.split(command)[3:]
    assert invoke(reproduce.main, [*args, "--json"]) == 0

    assert json.loads(capsys.readouterr().out.splitlines()[-1])["match"] is True


def test_the_baseline_trial_has_a_note_that_says_so(location):
    study = load(location)
    baseline = baseline_trial(study)
    assert baseline is not None

    note = get_note(optuna.Trial(study, baseline._trial_id))

    assert note.startswith("## The tutorial's baseline\n")
    assert f"The best trial so far, trial {study.best_trial.number}" in note


def test_rewriting_the_notes_replaces_them(location):
    study = load(location)

    write_notes(study, location)

    assert get_note(study) == study_note(study, location)


def test_reproduce_command_names_only_what_differs_from_the_defaults(tmp_path):
    default = StorageLocation("sqlite:///studies/ann.db", Path("studies/artifacts"), None)
    server = StorageLocation("postgresql+psycopg://me:secret@db/ann", Path("a"), None)

    assert reproduce_command("ann", default, 4) == "python -m search.reproduce --trial 4"
    assert reproduce_command("quick", server, 4) == (
        "python -m search.reproduce --trial 4 --study quick "
        "--storage 'postgresql+psycopg://me:***@db/ann'"
    )


def test_the_dashboard_command_hides_the_password():
    server = StorageLocation("postgresql+psycopg://me:secret@db/ann", Path("a"), None)

    assert dashboard_command(server) == (
        "optuna-dashboard 'postgresql+psycopg://me:***@db/ann' --artifact-dir a --host 127.0.0.1"
    )


def test_serve_dashboard_answers_on_localhost_and_stops_after(location, tmp_path):
    with serve_dashboard(location, tmp_path / "dashboard.log") as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/api/studies", timeout=10) as response:
            studies = json.load(response)["study_summaries"]
        assert [study["study_name"] for study in studies] == ["ann"]

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/api/meta", timeout=2)
