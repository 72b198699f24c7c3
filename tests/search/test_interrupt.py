"""Ctrl-C keeps finished trials, fails the running ones and exits 130."""

import os
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from search import worker
from tests.conftest import REPO_ROOT, read_trials


def wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the search"
        time.sleep(0.2)


def reported_and_running(trial) -> bool:
    """Running, reported, and far from its last epoch (1,500)."""
    steps = trial.intermediate_values
    return trial.state == TrialState.RUNNING and bool(steps) and max(steps) <= 1000


def trial_states(storage: str) -> list[TrialState]:
    return [trial.state for trial in read_trials(storage, "ann")]


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_sigint_keeps_finished_trials_and_fails_the_running_ones(workdir, jobs):
    storage = f"sqlite:///{workdir / 'studies/ann.db'}"
    command = [
        sys.executable,
        "-m",
        "search.run",
        "--trials",
        "50",
        "--jobs",
        jobs,
        "--epochs",
        "1500",
        "--report-every",
        "100",
        "--pruner",
        "none",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    try:
        wait_for(lambda: (workdir / "studies/ann.db").exists())
        wait_for(lambda: TrialState.COMPLETE in trial_states(storage))
        # A trial in mid-training, so that the signal does not arrive while the fused engine
        # tells a population that finished together (it would then find nothing to fail).
        wait_for(lambda: any(reported_and_running(t) for t in read_trials(storage, "ann")))
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    states = trial_states(storage)
    assert process.returncode == 130, stderr
    assert TrialState.RUNNING not in states
    assert TrialState.FAIL in states
    assert states.count(TrialState.COMPLETE) >= 1
    assert "stopped by SIGINT: finished trials are kept" in stderr
    assert "Traceback" not in stderr
    assert "Trials:" in stdout


def test_a_stop_signal_lost_in_a_finalizer_is_raised_at_the_next_check(capsys):
    saved_handlers = {signum: signal.getsignal(signum) for signum in worker.STOP_SIGNALS}
    saved_hook = sys.unraisablehook

    class RaisesTheSignalWhenCollected:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)
            sum(range(1000))  # the handler runs here, inside the finalizer

    try:
        worker.install_stop_handlers()
        RaisesTheSignalWhenCollected()  # Python drops the handler's exception

        assert "Traceback" not in capsys.readouterr().err
        with pytest.raises(worker.StopRequested) as stop:
            worker.check_stop()
        assert stop.value.exit_code == 130
    finally:
        for signum, handler in saved_handlers.items():
            signal.signal(signum, handler)
        sys.unraisablehook = saved_hook
        worker._received_stop = None
