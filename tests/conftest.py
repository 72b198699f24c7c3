"""Shared fixtures: running the entry points as a user does, in a temporary folder."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from search.locks import StudyLock
from search.storage import locate_storage

REPO_ROOT = Path(__file__).resolve().parent.parent

# Small budgets keep each command-line run to a few seconds.
QUICK = ["--epochs", "60", "--report-every", "20"]


def run_module(
    module: str, *args: str, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` in ``cwd`` and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary current directory, so that the default studies/ folder lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def start_module(module: str, *args: str, cwd: Path) -> subprocess.Popen:
    """Start ``python -m module args`` in ``cwd`` without waiting; output is captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def ensure_postgres_running() -> None:
    """Start the local PostgreSQL cluster if it does not answer (CI machines start it cold)."""
    if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
        return
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True
    )
    for _ in range(60):
        if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-q"]).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("PostgreSQL did not start on 127.0.0.1:5432")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    ensure_postgres_running()
    name = f"ann_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, workdir: Path) -> str:
    """The study storage of a test that runs on both SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{workdir / 'studies' / 'fleet.db'}"
    return request.getfixturevalue("postgres_url")


def read_trials(storage_url: str, study_name: str) -> list:
    """A study's trials, or none while it does not exist yet; creates nothing.

    It takes the study lock, as the workers do, so that it never races a worker that is
    creating the schema of a fresh database.
    """
    if storage_url.startswith("sqlite:///") and not Path(storage_url[10:]).exists():
        return []
    lock = StudyLock(locate_storage(storage_url), study_name)
    try:
        with lock.held():
            return optuna.load_study(study_name=study_name, storage=storage_url).trials
    except KeyError:
        return []
    finally:
        lock.close()
