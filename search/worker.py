"""The trial loop: ask, train, tell, until the shared budget of trials or time runs out.

The same loop runs in the main process (``--jobs 1``) or in each of several worker processes
(``--jobs N``); a :class:`TrialBudget` shared between them hands out exactly ``n_trials``.
"""

import logging
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import optuna
import torch

from ann.training import NonFiniteLossError
from search.objective import Objective
from search.storage import StorageLocation, open_storage
from search.study import StudySettings, make_pruner, make_sampler

logger = logging.getLogger(__name__)


class TrialBudget:
    """Hands out at most ``n_trials`` trial slots before ``deadline`` (a ``time.time()``).

    The counter lives in shared memory, so one budget can be shared by worker processes.
    """

    def __init__(
        self, n_trials: int, deadline: float | None, context: multiprocessing.context.BaseContext
    ) -> None:
        self.n_trials = n_trials
        self.deadline = deadline
        self._claimed: Synchronized = context.Value("i", 0)

    def claim(self) -> bool:
        """Take one slot; ``False`` once the trials are handed out or the time is up."""
        if self.deadline is not None and time.time() >= self.deadline:
            return False

        with self._claimed.get_lock():
            if self._claimed.value >= self.n_trials:
                return False
            self._claimed.value += 1
            return True


def run_trials(
    study: optuna.Study,
    objective: Objective,
    budget: TrialBudget,
    on_trial_finished: Callable[[], None] | None = None,
) -> None:
    """Run trials until ``budget`` says stop.

    A diverged trial is told FAIL (its reason is in the user attr ``fail_reason``) and the loop
    goes on; any other exception, Ctrl-C included, fails the running trial and propagates.
    """
    while budget.claim():
        trial = study.ask()
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except NonFiniteLossError as error:
            logger.warning("trial %d failed: %s", trial.number, error)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        except BaseException:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise
        else:
            study.tell(trial, value)

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


def load_worker_study(config: WorkerConfig) -> tuple[optuna.Study, Objective]:
    """Connect to the study with this worker's own sampler and pruner, and build its objective."""
    torch.set_num_threads(config.threads)
    study = optuna.load_study(
        study_name=config.study_name,
        storage=open_storage(config.location),
        sampler=make_sampler(config.sampler, config.sampler_seed),
        pruner=make_pruner(config.pruner, config.settings),
    )
    artifact_dir = Path(config.location.artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    objective = Objective(config.settings, torch.device(config.device), store)
    return study, objective


def worker_process(config: WorkerConfig, budget: TrialBudget) -> None:
    """Entry of a ``--jobs`` worker process; exits 130 on Ctrl-C after failing its trial."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study, objective = load_worker_study(config)
        run_trials(study, objective, budget)
    except KeyboardInterrupt:
        sys.exit(130)
