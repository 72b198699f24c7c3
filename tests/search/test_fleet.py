"""Many workers on one study, on SQLite and PostgreSQL: budgets, races, crashes, signals."""

import multiprocessing
import signal
import sqlite3
import time

import optuna
from optuna.trial import TrialState

from search.storage import Heartbeat, locate_storage
from search.study import BASELINE_ATTR, open_study_exclusively
from search.worker import counts_toward_budget
from tests.conftest import read_trials, start_module

STUDY = "fleet"
FAST = ["--epochs", "60", "--report-every", "20"]
GRACE = ["--grace-period", "2"]


def worker_args(storage_url: str, *extra: str) -> list[str]:
    return ["--storage", storage_url, "--study", STUDY, "--no-report", *extra]


def trials(storage_url: str) -> list[optuna.trial.FrozenTrial]:
    return read_trials(storage_url, STUDY)


def wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the workers"
        time.sleep(0.2)


def finish(process, timeout_s: float = 180.0) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    finally:
        process.kill()
    return process.returncode, stderr


def assert_nothing_left_running(storage_url: str) -> None:
    assert all(t.state != TrialState.RUNNING for t in trials(storage_url))


def test_four_workers_with_a_shared_budget_stop_at_the_exact_count(workdir, storage_url):
    processes = [
        start_module(
            "search.run", *worker_args(storage_url, "--max-trials", "10", *FAST), cwd=workdir
        )
        for _ in range(4)
    ]

    results = [finish(process) for process in processes]

    assert [code for code, _ in results] == [0] * 4, [err for _, err in results]
    stored = trials(storage_url)
    assert sum(counts_toward_budget(t) for t in stored) == 10
    assert len(stored) == 10
    assert sum(bool(t.user_attrs.get(BASELINE_ATTR)) for t in stored) == 1
    assert_nothing_left_running(storage_url)


def _open_at_once(storage_url: str, barrier, results) -> None:
    location = locate_storage(storage_url)
    barrier.wait()
    try:
        open_study_exclusively(
            location, STUDY, heartbeat=Heartbeat(1, 2), seed=None, epochs=60, report_every=20
        )
        results.put("ok")
    except Exception as error:  # noqa: BLE001 - the test reports whatever went wrong
        results.put(repr(error))


def test_eight_workers_opening_a_fresh_database_at_the_same_instant_all_succeed(
    workdir, storage_url
):
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(8), context.Queue()
    processes = [
        context.Process(target=_open_at_once, args=(storage_url, barrier, results))
        for _ in range(8)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)

    assert sorted(results.get(timeout=5) for _ in processes) == ["ok"] * 8
    stored = trials(storage_url)
    assert [(t.state, t.user_attrs.get(BASELINE_ATTR)) for t in stored] == [
        (TrialState.WAITING, True)
    ]


def test_simultaneous_commands_on_a_fresh_postgresql_database_run_one_baseline(
    workdir, postgres_url
):
    # The barrier test above covers both backends at one instant; this is the same race end
    # to end, on the backend a fleet uses, with 5 commands (each costs ~4 s of imports on 2 cores).
    storage_url = postgres_url
    processes = [
        start_module("search.run", *worker_args(storage_url, "--trials", "1", *FAST), cwd=workdir)
        for _ in range(5)
    ]

    results = [finish(process) for process in processes]

    assert [code for code, _ in results] == [0] * 5, [err for _, err in results]
    stored = trials(storage_url)
    assert len(stored) == 5
    assert sum(bool(t.user_attrs.get(BASELINE_ATTR)) for t in stored) == 1


def test_a_killed_workers_trial_is_failed_and_run_again(workdir, storage_url):
    args = worker_args(storage_url, "--max-trials", "4", "--epochs", "1000", *GRACE)
    victim = start_module("search.run", *args, cwd=workdir)
    wait_for(lambda: any(t.state == TrialState.RUNNING for t in trials(storage_url)))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = next(t for t in trials(storage_url) if t.state == TrialState.RUNNING)

    survivor = start_module("search.run", *args, cwd=workdir)
    code, stderr = finish(survivor)

    assert code == 0, stderr
    stored = trials(storage_url)
    assert stored[killed.number].state == TrialState.FAIL
    retries = [t for t in stored if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1
    assert retries[0].params == killed.params
    assert retries[0].user_attrs["seed"] == killed.user_attrs["seed"]
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert sum(counts_toward_budget(t) for t in stored) == 4
    assert_nothing_left_running(storage_url)


def test_sigterm_fails_the_running_trial_and_exits_143(workdir, storage_url):
    process = start_module(
        "search.run", *worker_args(storage_url, "--trials", "20", "--epochs", "3000"), cwd=workdir
    )
    wait_for(lambda: any(t.state == TrialState.RUNNING for t in trials(storage_url)))

    process.send_signal(signal.SIGTERM)
    code, stderr = finish(process)

    assert code == 143, stderr
    assert "stopped by SIGTERM: finished trials are kept" in stderr
    assert "Traceback" not in stderr
    # All trials were still training: the fused engine's population fails together.
    states = [t.state for t in trials(storage_url)]
    assert states and set(states) == {TrialState.FAIL}


def test_a_worker_stopped_past_the_grace_period_sees_its_trial_taken_over(workdir, storage_url):
    args = worker_args(storage_url, "--max-trials", "4", "--epochs", "1000", *GRACE)
    sleeper = start_module("search.run", *args, cwd=workdir)
    # Stop it only once its population of 4 is full: a worker stopped while it holds the
    # study lock (during a trial start) stalls the other workers until it resumes.
    wait_for(lambda: sum(t.state == TrialState.RUNNING for t in trials(storage_url)) == 4)
    sleeper.send_signal(signal.SIGSTOP)
    taken = next(t for t in trials(storage_url) if t.state == TrialState.RUNNING)

    other = start_module("search.run", *args, cwd=workdir)
    wait_for(lambda: trials(storage_url)[taken.number].state == TrialState.FAIL)
    sleeper.send_signal(signal.SIGCONT)
    results = [finish(sleeper), finish(other)]

    assert [code for code, _ in results] == [0, 0], [err for _, err in results]
    assert f"trial {taken.number} was marked failed by another worker" in results[0][1]
    stored = trials(storage_url)
    assert stored[taken.number].state == TrialState.FAIL
    assert any(t.system_attrs.get("failed_trial") == taken.number for t in stored)
    assert sum(counts_toward_budget(t) for t in stored) == 4
    assert_nothing_left_running(storage_url)


def test_sqlite_with_four_jobs_finishes_every_share_without_locking_errors(workdir):
    url = f"sqlite:///{workdir / 'jobs.db'}"
    process = start_module(
        "search.run", *worker_args(url, "--jobs", "4", "--trials", "8", *FAST), cwd=workdir
    )

    code, stderr = finish(process)

    assert code == 0, stderr
    assert "database is locked" not in stderr
    stored = trials(url)
    assert len(stored) == 8
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in stored)
    with sqlite3.connect(workdir / "jobs.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
