"""Storage faults: a full disk, a read-only file, another Optuna version's schema.

The disk tests mount a small tmpfs, so they need root (CI and the development machines run
as root); elsewhere they are skipped and say why.
"""

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from search import run
from search.cli import invoke
from tests.conftest import QUICK, run_module

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 240 KiB tmpfs: room for a fresh study and a few dozen trials, then full."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=240k", "tmpfs", mount_point], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", mount_point], check=True)


def integrity(path: Path) -> str:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


@needs_root
def test_a_full_disk_stops_the_search_with_one_line_and_an_intact_study(workdir, small_disk):
    storage = f"sqlite:///{small_disk / 'ann.db'}"
    args = ["--storage", storage, "--artifact-dir", "artifacts", "--trials", "400", "--no-report"]

    completed = run_module(
        "search.run", *args, "--epochs", "10", "--report-every", "1", cwd=workdir
    )

    assert completed.returncode == 1
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: the study database failed (database or disk is full); finished trials are kept"
    ]
    assert "Traceback" not in completed.stderr
    assert integrity(small_disk / "ann.db") == "ok"


@needs_root
def test_a_read_only_study_file_is_refused_and_left_as_it_was(workdir, small_disk, capsys):
    storage = f"sqlite:///{small_disk / 'ann.db'}"
    assert (
        invoke(
            run.main,
            ["--storage", storage, "--artifact-dir", "artifacts", "--trials", "1", *QUICK],
        )
        == 0
    )
    subprocess.run(["mount", "-o", "remount,ro", small_disk], check=True)
    before = (small_disk / "ann.db").read_bytes()
    capsys.readouterr()

    code = invoke(run.main, ["--storage", storage, "--trials", "1"])

    stderr = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(stderr) == 1 and "is read-only" in stderr[0]
    assert (small_disk / "ann.db").read_bytes() == before


def test_a_schema_from_another_optuna_version_is_refused_and_left_as_it_was(workdir, capsys):
    assert invoke(run.main, ["--trials", "1", *QUICK]) == 0
    database = workdir / "studies" / "ann.db"
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'v99.0.0.a'")
    connection.close()
    before = database.read_bytes()
    capsys.readouterr()

    code = invoke(run.main, ["--trials", "1"])

    stderr = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(stderr) == 1
    assert "schema (v99.0.0.a)" in stderr[0] and "optuna storage upgrade" in stderr[0]
    assert database.read_bytes() == before


def test_a_refusing_server_is_retried_then_named_in_one_line(workdir, capsys):
    code = invoke(run.main, ["--storage", "postgresql+psycopg://postgres@127.0.0.1:1/x"])

    stderr = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(stderr) == 1
    assert "after 4 attempts" in stderr[0] and "check that the server runs" in stderr[0]
