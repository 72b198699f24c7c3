"""Shared fixtures: running the entry points as a user does, in a temporary folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
