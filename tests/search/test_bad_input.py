"""Bad input: one line on stderr naming the problem and the fix, exit 2, nothing written."""

import sqlite3
from pathlib import Path

import pytest
import torch

from search import baseline, reproduce, run
from search.cli import invoke
from tests.conftest import QUICK, run_module

ENTRY_POINTS = {"run": run.main, "reproduce": reproduce.main, "baseline": baseline.main}


def files_under(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder below ``folder``, with the bytes of each file."""
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() else None
        for path in folder.rglob("*")
    }


def assert_refused(capsys, entry: str, args: list[str], folder: Path, *expected: str) -> str:
    before = files_under(folder)

    code = invoke(ENTRY_POINTS[entry], args)

    stderr = capsys.readouterr().err
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    for text in expected:
        assert text in stderr
    assert files_under(folder) == before
    return stderr


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--trials", "0"], "--trials: must be a positive integer, got '0'"),
        (["--trials", "many"], "--trials: must be a positive integer, got 'many'"),
        (["--epochs", "-5"], "--epochs: must be a positive integer"),
        (["--epochs", "2.5"], "--epochs: must be a positive integer"),
        (["--report-every", "0"], "--report-every: must be a positive integer"),
        (["--epochs", "100", "--report-every", "200"], "pass a value from 1 to --epochs"),
        (["--report-every", "20000"], "more than the 10000 epochs"),
        (["--timeout", "-1"], "--timeout"),
        (["--jobs", "0"], "--jobs"),
        (["--storage", "redis://localhost/0"], "scheme 'redis' is not supported"),
        (["--storage", "not a url"], "is not a database URL"),
        (["--storage", "sqlite://"], "names no file"),
        (["--device", "tpu"], "invalid choice: 'tpu'"),
        (["--engine", "fast"], "invalid choice: 'fast'"),
        (["--population", "0"], "--population: must be a positive integer"),
        (["--engine", "eager", "--population", "4"], "drop --population or pass --engine fused"),
    ],
)
def test_run_refuses_bad_options(capsys, workdir, args, expected):
    assert_refused(capsys, "run", args, workdir, expected)


def test_unreachable_database_is_named_without_its_password(capsys, workdir):
    url = "postgresql+psycopg://user:secret@127.0.0.1:1/none"

    stderr = assert_refused(
        capsys, "run", ["--storage", url], workdir, "cannot reach the database"
    )

    assert "secret" not in stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused(capsys, workdir):
    assert_refused(capsys, "run", ["--device", "cuda"], workdir, "--device cuda", "--device cpu")


def test_a_file_that_is_not_sqlite_is_left_untouched(capsys, workdir):
    (workdir / "notes.db").write_text("my notes, not a database\n")

    assert_refused(
        capsys, "run", ["--storage", "sqlite:///notes.db"], workdir, "is not a SQLite database"
    )


def test_another_programs_sqlite_database_is_left_untouched(capsys, workdir):
    with sqlite3.connect(workdir / "app.db") as connection:
        connection.execute("CREATE TABLE users (name TEXT)")
    connection.close()

    assert_refused(capsys, "run", ["--storage", "sqlite:///app.db"], workdir, "another program")


def test_resuming_with_other_epochs_is_refused_and_changes_nothing(capsys, workdir):
    assert invoke(run.main, ["--trials", "1", *QUICK]) == 0
    capsys.readouterr()

    assert_refused(capsys, "run", ["--trials", "1", "--epochs", "80"], workdir, "--epochs 60")


def test_reproduce_without_a_study_file_creates_none(capsys, workdir):
    assert_refused(capsys, "reproduce", ["--trial", "0"], workdir, "no study file", "search.run")


def test_reproduce_of_unknown_study_or_trial_lists_what_exists(capsys, workdir):
    assert invoke(run.main, ["--trials", "1", *QUICK]) == 0
    capsys.readouterr()

    assert_refused(
        capsys, "reproduce", ["--trial", "0", "--study", "nope"], workdir, "studies: ann"
    )
    assert_refused(capsys, "reproduce", ["--trial", "7"], workdir, "numbered 0 to 0")
    assert_refused(capsys, "reproduce", ["--trial", "-1"], workdir, "non-negative integer")


def test_baseline_refuses_zero_epochs(capsys, workdir):
    assert_refused(capsys, "baseline", ["--epochs", "0"], workdir, "--epochs")


def test_the_process_exit_code_and_message_are_the_same_from_the_shell(workdir):
    completed = run_module("search.run", "--trials", "0", cwd=workdir)

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        "python -m search.run: error: argument --trials: must be a positive integer, got '0' "
        "(see --help)"
    ]
    assert list(workdir.iterdir()) == []
