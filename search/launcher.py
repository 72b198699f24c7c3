"""Running a command's workers: in this process for ``--jobs 1``, else in worker processes.

Each worker runs its trials with the engine of its config: one trial at a time
(:func:`~search.worker.run_trials`) or a population of them (:class:`~search.fused.FusedRun`).
The parent process follows the study for the progress display, passes SIGINT and SIGTERM on
to its workers, and fails the trial of any worker that died without cleaning up.
"""

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized

import optuna

from search.fused import FusedRun
from search.progress import SearchProgress
from search.worker import (
    DATABASE_ERRORS,
    StopRequested,
    TrialBudget,
    Worker,
    WorkerConfig,
    connect_worker,
    database_error_text,
    fail_abandoned_trial,
    install_stop_handlers,
    run_trials,
)

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5


@dataclass
class RunOutcome:
    """How the workers ended."""

    stop_signal: int | None = None
    crashed_workers: int = 0
    database_error: str | None = None


def run_engine(
    worker: Worker,
    config: WorkerConfig,
    budget: TrialBudget,
    *,
    on_trial_started: Callable[[optuna.Trial | None], None] | None = None,
    on_trial_finished: Callable[[], None] | None = None,
) -> None:
    """Run the worker's trials with the engine its config names."""
    if config.engine == "fused":
        FusedRun(
            worker.study,
            worker.objective,
            budget,
            size=config.population,
            cap=worker.cap,
            on_trial_finished=on_trial_finished,
        ).run()
        return

    run_trials(
        worker.study,
        worker.objective,
        budget,
        cap=worker.cap,
        on_trial_started=on_trial_started,
        on_trial_finished=on_trial_finished,
    )


def run_here(config: WorkerConfig, budget: TrialBudget, progress: SearchProgress) -> RunOutcome:
    """Run the trial loop in this process."""
    outcome = RunOutcome()
    worker = connect_worker(config)
    try:
        run_engine(worker, config, budget, on_trial_finished=progress.update)
    except StopRequested as stop:
        outcome.stop_signal = stop.signum
    except DATABASE_ERRORS as error:
        # TODO: a lost database ends the worker; reconnecting and carrying on is not built.
        outcome.database_error = database_error_text(error)
    finally:
        worker.close()
    return outcome


def worker_process(config: WorkerConfig, budget: TrialBudget, current_trial: Synchronized) -> None:
    """Entry of a ``--jobs`` worker process.

    ``current_trial`` holds the id of the trial this worker runs (-1 between trials), so that
    the parent can fail it if this process dies. A fused worker leaves it at -1: its trials
    are recovered through their heartbeats. Exits 128 + signal number on SIGINT/SIGTERM,
    1 with one line on stderr if the database fails.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    install_stop_handlers()

    # TODO: the fused engine runs many trials and reports none here, so if its process dies
    # the parent fails nothing and its trials wait for the heartbeat check of another worker.
    def remember(trial: optuna.Trial | None) -> None:
        current_trial.value = -1 if trial is None else trial._trial_id

    worker = None
    try:
        worker = connect_worker(config)
        run_engine(worker, config, budget, on_trial_started=remember)
    except StopRequested as stop:
        sys.exit(stop.exit_code)
    except DATABASE_ERRORS as error:
        print(
            f"error: the study database failed ({database_error_text(error)}); "
            "finished trials are kept",
            file=sys.stderr,
        )
        sys.exit(1)
    finally:
        if worker is not None:
            worker.close()


def run_in_processes(
    configs: list[WorkerConfig], budget: TrialBudget, progress: SearchProgress
) -> RunOutcome:
    """Start one worker process per config and follow the study until all of them end."""
    context = multiprocessing.get_context("spawn")
    current_trials = [context.Value("q", -1) for _ in configs]
    processes = [
        context.Process(target=worker_process, args=(config, budget, current))
        for config, current in zip(configs, current_trials, strict=True)
    ]
    for process in processes:
        process.start()

    outcome = RunOutcome()
    try:
        while any(process.is_alive() for process in processes):
            progress.update()
            time.sleep(POLL_INTERVAL_S)
    except StopRequested as stop:
        outcome.stop_signal = stop.signum
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, stop.signum)
        for process in processes:
            process.join()

    for process, current in zip(processes, current_trials, strict=True):
        exit_code = process.exitcode or 0
        if exit_code < 0 and current.value >= 0:
            logger.warning(
                "worker %d died from signal %d; failing its trial", process.pid, -exit_code
            )
            fail_abandoned_trial(progress.study, current.value)
        if exit_code >= 128 and outcome.stop_signal is None:
            outcome.stop_signal = exit_code - 128
        elif exit_code != 0 and exit_code < 128:
            outcome.crashed_workers += 1
    return outcome


def run_workers(
    configs: list[WorkerConfig], budget: TrialBudget, progress: SearchProgress
) -> RunOutcome:
    """Run one worker per config until the budgets are spent or a stop signal arrives."""
    if len(configs) == 1:
        return run_here(configs[0], budget, progress)
    return run_in_processes(configs, budget, progress)


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, and so on."""
    return signal.Signals(signum).name
