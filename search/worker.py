"""The trial loop: ask, train, tell, until the budget of trials or time runs out.

The same loop runs in the main process (``--jobs 1``) or in each of several worker processes
(``--jobs N``), and in any number of ``search.run`` commands sharing one study. Three budgets
can end it: this command's ``--trials`` (a :class:`TrialBudget` shared by its workers), the
study-wide ``--max-trials`` (counted under the :class:`~search.locks.StudyLock`), and
``--timeout``.

Crash recovery rides on Optuna's heartbeats: while a trial trains, a thread records a heartbeat;
before each new trial, a worker fails the trials whose heartbeat went silent for longer than the
grace period, and Optuna's retry callback enqueues their parameters as a new trial.
"""

import contextlib
import functools
import logging
import multiprocessing
import multiprocessing.context
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from types import FrameType
from typing import Any

import optuna
import sqlalchemy
import torch

# TODO: private Optuna API; Optuna runs heartbeats only inside Study.optimize and offers no
# public way to run them with ask/tell, which this loop needs for its budgets.
from optuna.storages._heartbeat import BaseHeartbeat, get_heartbeat_thread
from optuna.trial import TrialState

from ann.training import NonFiniteLossError
from search.locks import StudyLock
from search.objective import FAIL_REASON_ATTR, Objective
from search.storage import Heartbeat, StorageLocation, open_storage
from search.study import StudySettings, make_pruner, make_sampler

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DATABASE_ERRORS = (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError)
"""What a failing database raises: a lost server, a full disk, a file turned read-only."""


def database_error_text(error: BaseException) -> str:
    """The innermost cause of a database error, on one line (e.g. 'database or disk is full')."""
    while error.__cause__ is not None:
        error = error.__cause__
    cause = getattr(error, "orig", None) or error
    return str(cause).strip().splitlines()[0]


class StopRequested(BaseException):
    """SIGINT or SIGTERM arrived; the running trial is failed and the worker stops."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 plus the signal number (130, 143)."""
        return 128 + self.signum


_received_stop: int | None = None
"""The stop signal this process received, if any."""
_deferred_depth = 0
"""How many :func:`stop_signals_deferred` blocks the main thread is in."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    global _received_stop
    _received_stop = signum
    if _deferred_depth == 0:
        raise StopRequested(signum)


def _unless_lost_stop(unraisable: Any, previous: Callable[[Any], None]) -> None:
    # A signal that lands while Python runs a finalizer or a weakref callback raises there,
    # and Python drops the exception with a traceback on stderr; check_stop raises it again.
    if not isinstance(unraisable.exc_value, StopRequested):
        previous(unraisable)


def install_stop_handlers() -> None:
    """Turn SIGINT and SIGTERM into :class:`StopRequested` in this process."""
    global _received_stop, _deferred_depth
    _received_stop, _deferred_depth = None, 0
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stop)
    previous = sys.unraisablehook
    if not (isinstance(previous, functools.partial) and previous.func is _unless_lost_stop):
        sys.unraisablehook = functools.partial(_unless_lost_stop, previous=previous)


def check_stop() -> None:
    """Raise :class:`StopRequested` if a stop signal arrived and its exception was lost."""
    if _received_stop is not None:
        raise StopRequested(_received_stop)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back until the block ends; blocks nest.

    A stop signal that arrives inside the block is recorded, and :class:`StopRequested` is
    raised when the outermost block ends (unless the block raised). This is decided in the
    Python handler, not with a signal mask: the kernel may deliver the signal to any thread
    that does not block it (torch's, for one), and Python then runs the handler in the main
    thread whatever that thread's mask.
    """
    global _deferred_depth
    _deferred_depth += 1
    try:
        yield
    finally:
        _deferred_depth -= 1
    if _deferred_depth == 0:
        check_stop()


class TrialBudget:
    """Hands out at most ``n_trials`` trial slots (``None``: no limit) before ``deadline``.

    ``deadline`` is a ``time.time()``. The counter lives in shared memory, so one budget can be
    shared by the worker processes of one command.
    """

    def __init__(
        self,
        n_trials: int | None,
        deadline: float | None,
        context: multiprocessing.context.BaseContext,
    ) -> None:
        self.n_trials = n_trials
        self.deadline = deadline
        self._claimed: Synchronized = context.Value("i", 0)

    def claim(self) -> bool:
        """Take one slot; ``False`` once the trials are handed out or the time is up."""
        # TODO: the deadline is checked between trials only; a running trial always finishes.
        if self.deadline is not None and time.time() >= self.deadline:
            return False
        if self.n_trials is None:
            return True

        with self._claimed.get_lock():
            if self._claimed.value >= self.n_trials:
                return False
            self._claimed.value += 1
            return True


def ask(study: optuna.Study) -> optuna.Trial:
    """``study.ask()``, without Optuna's warning that heartbeats are meant for
    ``Study.optimize``: :func:`run_trials` runs the heartbeat thread itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
        return study.ask()


def counts_toward_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial uses up the study-wide budget: it finished, runs, or diverged.

    Trials that failed because their worker died or was stopped do not count: their
    parameters run again.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and FAIL_REASON_ATTR in trial.user_attrs


@dataclass
class StudyCap:
    """Starts trials under the study lock, and holds the study-wide ``--max-trials`` budget.

    The lock also keeps two workers from popping the same enqueued trial (the baseline, or a
    retry): Optuna claims a waiting trial with ``SELECT ... FOR UPDATE``, which SQLite ignores,
    so without it two SQLite workers can both run one trial.
    """

    max_trials: int | None
    lock: StudyLock

    def ask(self, study: optuna.Study) -> optuna.Trial | None:
        """Start a trial unless the study already holds ``max_trials`` counted trials."""
        with self.lock.held():
            if self.max_trials is not None:
                trials = study.get_trials(deepcopy=False)
                if sum(counts_toward_budget(t) for t in trials) >= self.max_trials:
                    return None
            return ask(study)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail trials whose worker stopped sending heartbeats, and enqueue their retries."""
    # TODO: this runs only when a worker starts a trial, so a study that no worker touches
    # again keeps a dead worker's trial RUNNING (listed in the README's known limitations).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def fail_abandoned_trial(study: optuna.Study, trial_id: int) -> None:
    """Fail a RUNNING trial whose worker is known to be dead, and enqueue its retry."""
    storage = study._storage
    try:
        failed_now = storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    if not (failed_now and isinstance(storage, BaseHeartbeat)):
        return
    callback = storage.get_heartbeat_stale_trial_callback()
    if callback is not None:
        callback(study, storage.get_trial(trial_id))


def tell_unless_taken_over(study: optuna.Study, trial: optuna.Trial, **outcome: Any) -> None:
    """``study.tell(trial, **outcome)``, logging instead if another worker failed it first."""
    told = study.tell(trial, skip_if_finished=True, **outcome)
    expected = outcome.get("state", TrialState.COMPLETE)
    if told.state != expected:
        log_take_over(trial)


def log_take_over(trial: optuna.Trial) -> None:
    """Say that ``trial`` was failed by another worker and that this one drops it."""
    logger.warning(
        "trial %d was marked failed by another worker while this one was unresponsive "
        "(past the heartbeat grace period); its parameters run again as a new trial, "
        "this worker drops its result and goes on",
        trial.number,
    )


def fail_interrupted_trial(study: optuna.Study, trial: optuna.Trial) -> None:
    """Tell ``trial`` FAIL because its worker is stopping; if the database fails too, say so
    and leave the trial to the heartbeat check of another worker."""
    try:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except DATABASE_ERRORS as error:
        logger.warning(
            "could not mark trial %d failed (%s); it stays RUNNING until another "
            "worker finds its heartbeat stale",
            trial.number,
            database_error_text(error),
        )


def ignore_stop_signals() -> None:
    """Ignore further SIGINT and SIGTERM while a stopping worker cleans up."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def run_trials(
    study: optuna.Study,
    objective: Objective,
    budget: TrialBudget,
    *,
    cap: StudyCap | None = None,
    on_trial_started: Callable[[optuna.Trial | None], None] | None = None,
    on_trial_finished: Callable[[], None] | None = None,
) -> None:
    """Run trials until a budget says stop.

    A diverged trial is told FAIL (its reason is in the user attr ``fail_reason``) and the loop
    goes on; any other exception, :class:`StopRequested` included, fails the running trial and
    propagates. A trial taken over by another worker (see :func:`fail_stale_trials`) is dropped.
    """
    while budget.claim():
        # TODO: a lost stop exception (see check_stop) is noticed here, after the running
        # trial ends; the fused engine notices it at the next report epoch.
        check_stop()
        fail_stale_trials(study)
        trial: optuna.Trial | None = None
        try:
            # A stop signal during ask() would leave the new trial RUNNING with nobody to fail
            # it; held back until here, it lands inside this try, where the trial is known.
            with stop_signals_deferred():
                trial = cap.ask(study) if cap is not None else ask(study)
            if trial is None:
                return
            if on_trial_started is not None:
                on_trial_started(trial)

            with get_heartbeat_thread(trial._trial_id, study._storage):
                value = objective(trial)
        # The objective raised these, so a trial exists in each of the next three branches.
        except optuna.TrialPruned:
            assert trial is not None
            tell_unless_taken_over(study, trial, state=TrialState.PRUNED)
        except NonFiniteLossError as error:
            assert trial is not None
            logger.warning("trial %d failed: %s", trial.number, error)
            tell_unless_taken_over(study, trial, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            assert trial is not None
            log_take_over(trial)
        except BaseException:
            ignore_stop_signals()
            if trial is not None:
                fail_interrupted_trial(study, trial)
            raise
        else:
            tell_unless_taken_over(study, trial, values=value)

        if on_trial_started is not None:
            on_trial_started(None)
        if on_trial_finished is not None:
            on_trial_finished()


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to rebuild its study, sampler and objective (picklable)."""

    location: StorageLocation
    study_name: str
    settings: StudySettings
    device: str
    sampler: str
    sampler_seed: int
    pruner: str
    threads: int
    heartbeat: Heartbeat
    max_trials: int | None = None
    engine: str = "eager"
    population: int = 1


@dataclass
class Worker:
    """A connected worker: its study handle, objective and the lock-guarded way to ask."""

    study: optuna.Study
    storage: optuna.storages.RDBStorage
    objective: Objective
    cap: StudyCap

    def close(self) -> None:
        """Release the database connections."""
        self.cap.lock.close()
        self.storage.remove_session()
        self.storage.engine.dispose()


def connect_worker(config: WorkerConfig) -> Worker:
    """Connect to the study with this worker's own sampler and pruner, and build its objective."""
    torch.set_num_threads(config.threads)
    storage = open_storage(config.location, heartbeat=config.heartbeat)
    study = optuna.load_study(
        study_name=config.study_name,
        storage=storage,
        sampler=make_sampler(config.sampler, config.sampler_seed),
        pruner=make_pruner(config.pruner, config.settings),
    )
    config.location.artifact_dir.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(config.location.artifact_dir))
    objective = Objective(config.settings, torch.device(config.device), store)
    cap = StudyCap(config.max_trials, StudyLock(config.location, config.study_name))
    return Worker(study, storage, objective, cap)
