"""The fused engine: many trials of one study train at once, as members of populations.

A worker holds up to ``--population`` trials, each a member of the
:class:`~ann.population.Population` of its stack shape (:func:`search.space.padded_widths`).
The loop asks the study for trials until the population is full, trains every stack up to the
next report epoch, reports each member's validation L1 to its trial, prunes the members whose
trial the pruner stops, tells the finished and pruned trials, and fills the free places again,
until the budgets run out and the last members finish.

Trials are stored as the one-trial engine (:class:`~search.objective.Objective`) stores them:
same parameters, user attrs, intermediate values and artifacts, plus the user attrs ``engine``
and ``padded_widths``; ``seconds`` is the wall time the trial spent in the population, shared
with the other members. ``search.reproduce`` retrains any of them with either engine.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.storages._heartbeat import BaseHeartbeatThread, get_heartbeat_thread
from optuna.trial import TrialState

from ann.data import QuadraticData
from ann.population import MemberReport, Population
from ann.training import NonFiniteLossError, TrainingResult
from search.objective import Objective, initial_model
from search.space import NetworkConfig, padded_widths
from search.study import MEDIAN_STARTUP_TRIALS, StudySettings
from search.worker import (
    StudyCap,
    TrialBudget,
    ask,
    check_stop,
    fail_interrupted_trial,
    fail_stale_trials,
    ignore_stop_signals,
    log_take_over,
    stop_signals_deferred,
    tell_unless_taken_over,
)

logger = logging.getLogger(__name__)

ENGINE_CHOICES = ("auto", "fused", "eager")
DEFAULT_POPULATION = 16
FUSED_DEVICE_TYPES = ("cpu", "cuda")
PADDED_WIDTHS_ATTR = "padded_widths"
"""User attr of a fused trial: the stack it trained in. On the same device, training in a
stack of the same widths reproduces it to the last bit, whatever the other members were
(checked on the CPU)."""


class PruningView:
    """The study as a percentile (or median) pruner sees it, read once per report epoch.

    Each read of a study's trials reloads every running trial with its intermediate values,
    so with a population running, one read per member cost more than the training itself
    (27 ms per decision with 32 trials running, in a profile). The pruner's decisions for one
    report epoch are made against one read of the completed trials instead; other pruners
    (Hyperband writes while it decides) are asked through ``trial.should_prune()``.
    """

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.direction = study.direction
        self._completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    @classmethod
    def of(cls, study: optuna.Study) -> "PruningView | None":
        """A view for ``study`` if its pruner can use one, else ``None``."""
        if isinstance(study.pruner, optuna.pruners.PercentilePruner):
            return cls(study)
        return None

    def get_trials(
        self, deepcopy: bool = False, states: tuple[TrialState, ...] | None = None
    ) -> list[optuna.trial.FrozenTrial]:
        """The completed trials, as read when the view was made."""
        assert states == (TrialState.COMPLETE,), "a percentile pruner reads completed trials"
        return list(self._completed)

    def should_prune(self, trial: optuna.Trial) -> bool:
        """What ``trial.should_prune()`` says, decided against this view."""
        # TODO: private Optuna API; the trial's own cached record, which should_prune reads.
        frozen = trial._get_latest_trial()
        return self.study.pruner.prune(self, frozen)  # type: ignore[arg-type]


def choose_engine(requested: str, device: torch.device) -> str:
    """The engine ``--engine requested`` means on ``device``.

    ``auto`` picks the fused engine on the CPU, where, one process per core, it measured at
    least as fast as the one-trial loop at every population size, and many times faster on
    networks that share a stack (benchmarks/population_speed.py, figures in the README). It
    also picks it on CUDA, unmeasured: there both engines are bound by kernel launches, and
    the fused one launches one set per stack per epoch instead of one per trial. Elsewhere
    (MPS), where the fused engine is untested, it picks the one-trial engine.
    """
    if requested != "auto":
        return requested
    return "fused" if device.type in FUSED_DEVICE_TYPES else "eager"


@dataclass
class RunningTrial:
    """A trial that holds a place in the population, and the thread sending its heartbeats."""

    trial: optuna.Trial
    config: NetworkConfig | None = None
    heartbeat: BaseHeartbeatThread | None = None

    def start_heartbeat(self, storage: optuna.storages.BaseStorage) -> None:
        """Start recording the trial's heartbeats (if the storage keeps them)."""
        heartbeat = get_heartbeat_thread(self.trial._trial_id, storage)
        heartbeat.start()
        self.heartbeat = heartbeat

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread, if one was started."""
        if self.heartbeat is not None:
            self.heartbeat.join()
            self.heartbeat = None


Place = tuple[tuple[int, ...], int]
"""Where a trial trains: its stack (the stack's padded widths) and its member id there."""


class FusedRun:
    """Trials of ``study`` trained up to ``size`` at a time; see the module docstring.

    The population is one :class:`~ann.population.Population` per stack shape (see
    :func:`search.space.padded_widths`); ``size`` bounds all of them together.
    """

    def __init__(
        self,
        study: optuna.Study,
        objective: Objective,
        budget: TrialBudget,
        *,
        size: int,
        cap: StudyCap | None = None,
        on_trial_finished: Callable[[], None] | None = None,
    ) -> None:
        self.study = study
        self.objective = objective
        self.budget = budget
        self.size = size
        self.cap = cap
        self.on_trial_finished = on_trial_finished
        self.stacks: dict[tuple[int, ...], Population] = {}
        self.running: dict[Place, RunningTrial] = {}
        self.starting: RunningTrial | None = None
        """A trial asked for but not yet in its stack."""
        self._pruner_ready = False

    def run(self) -> None:
        """Train until the budgets are spent and every started trial is told.

        Any exception, :class:`~search.worker.StopRequested` included, fails the running
        trials and propagates.
        """
        budget_left = True
        try:
            while True:
                check_stop()
                # Stop signals land only while the stacks train: raised inside a database
                # call, a signal's exception can leave the connection unusable for the
                # cleanup that must fail the running trials.
                with stop_signals_deferred():
                    if budget_left:
                        budget_left = self._fill()
                    if not self.running:
                        return

                reports = [
                    ((widths, member_report.member), member_report)
                    for widths, stack in list(self.stacks.items())
                    if stack.n_members
                    for member_report in stack.train_until_report()
                ]
                with stop_signals_deferred():
                    self._handle_reports(reports)
        except BaseException:
            ignore_stop_signals()
            self._fail_running_trials()
            raise

    def _fail_running_trials(self) -> None:
        """Stop every heartbeat, then fail every trial this run still holds."""
        holders = list(self.running.values())
        if self.starting is not None:
            holders.append(self.starting)
        try:
            for running in holders:
                running.stop_heartbeat()
        finally:
            for running in holders:
                fail_interrupted_trial(self.study, running.trial)
            self.running.clear()
            self.starting = None

    def _fill(self) -> bool:
        """Start trials until the population is full; ``False`` once a budget says no more."""
        while len(self.running) < self._room():
            if not self.budget.claim():
                return False
            fail_stale_trials(self.study)
            with stop_signals_deferred():
                trial = self.cap.ask(self.study) if self.cap is not None else ask(self.study)
                if trial is None:
                    return False
                self.starting = RunningTrial(trial)
                self.starting.start_heartbeat(self.study._storage)

            config, init_seed = self.objective.start(trial, engine="fused")
            widths = padded_widths(config)
            trial.set_user_attr(PADDED_WIDTHS_ATTR, list(widths))
            member = self._stack(widths).add(
                initial_model(config, init_seed),
                optimizer_name=config.optimizer,
                lr=config.lr,
                epochs=self.objective.settings.epochs,
            )
            self.starting.config = config
            self.running[(widths, member)] = self.starting
            self.starting = None
        return True

    def _room(self) -> int:
        """How many trials the population may hold now.

        Members that start together finish together, so none of the first population's trials
        could be pruned: the median pruner waits for its startup trials to complete. Until the
        study has that many completed trials, the population holds no more than that many.
        In the default 100-trial study, a full first population of 16 per worker ran about
        twice the epochs of the one-trial engine for this reason.
        """
        if self._pruner_ready or not isinstance(self.study.pruner, optuna.pruners.MedianPruner):
            return self.size

        completed = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self._pruner_ready = len(completed) >= MEDIAN_STARTUP_TRIALS
        return self.size if self._pruner_ready else min(self.size, MEDIAN_STARTUP_TRIALS)

    def _stack(self, widths: tuple[int, ...]) -> Population:
        if widths not in self.stacks:
            self.stacks[widths] = Population(
                self.objective.data,
                size=self.size,
                padded_widths=widths,
                report_every=self.objective.settings.report_every,
                device=self.objective.device,
            )
        return self.stacks[widths]

    def _handle_reports(self, reports: list[tuple[Place, MemberReport]]) -> None:
        """Report every member's validation L1, then finish, prune or go on with each."""
        reported = []
        for place, member_report in reports:
            report = member_report.report
            trial = self.running[place].trial
            try:
                if not report.is_finite:
                    error = NonFiniteLossError(report.epoch, report.train_l1, report.val_l1)
                    logger.warning("trial %d failed: %s", trial.number, error)
                    self.objective.record_divergence(trial, error)
                    self._finish(place, state=TrialState.FAIL)
                    continue
                trial.report(report.val_l1, report.epoch)
            except optuna.exceptions.UpdateFinishedTrialError:
                self._drop_taken_over(place)
                continue
            reported.append((place, member_report))

        view = PruningView.of(self.study)
        for place, member_report in reported:
            trial = self.running[place].trial
            try:
                if member_report.finished:
                    self._complete(place)
                elif view.should_prune(trial) if view is not None else trial.should_prune():
                    stack = self.stacks[place[0]]
                    result = stack.member_result(place[1], stopped_early=True)
                    self.objective.record_result(trial, result)
                    self._finish(place, state=TrialState.PRUNED)
            except optuna.exceptions.UpdateFinishedTrialError:
                self._drop_taken_over(place)

    def _drop_taken_over(self, place: Place) -> None:
        with stop_signals_deferred():
            running = self.running[place]
            running.stop_heartbeat()
            log_take_over(running.trial)
            self._free(place)

    def _complete(self, place: Place) -> None:
        """Store a finished member's result and artifacts, and tell its trial COMPLETE."""
        running = self.running[place]
        assert running.config is not None
        stack = self.stacks[place[0]]
        result = stack.member_result(place[1], stopped_early=False)
        self.objective.record_result(running.trial, result)
        model = stack.member_model(place[1])
        self.objective.upload_artifacts(running.trial, model, result, running.config)
        self._finish(place, values=result.val_l1)

    def _finish(self, place: Place, **outcome: Any) -> None:
        """Tell the trial at ``place`` its ``outcome`` and take it out of the population.

        Stop signals wait until the trial is told and gone, so that it is never lost between
        the two (a signal before lands in :meth:`run`, which fails the trial)."""
        with stop_signals_deferred():
            running = self.running[place]
            running.stop_heartbeat()
            tell_unless_taken_over(self.study, running.trial, **outcome)
            self._free(place)
        if self.on_trial_finished is not None:
            self.on_trial_finished()

    def _free(self, place: Place) -> None:
        """Take the trial at ``place`` out of its stack and of this run."""
        widths, member = place
        self.stacks[widths].remove(member)
        del self.running[place]


def train_alone_in_population(
    config: NetworkConfig,
    data: QuadraticData,
    *,
    init_seed: int,
    settings: StudySettings,
    device: torch.device,
    epochs: int,
    stack_widths: tuple[int, ...] | None = None,
) -> tuple[torch.nn.Sequential, TrainingResult]:
    """Train one network as the only member of a population stacked to ``stack_widths``
    (default: the fused engine's stack for it); the fused engine's counterpart of
    :func:`search.objective.train_network`."""
    population = Population(
        data,
        size=1,
        padded_widths=stack_widths or padded_widths(config),
        report_every=settings.report_every,
        device=device,
    )
    member = population.add(
        initial_model(config, init_seed),
        optimizer_name=config.optimizer,
        lr=config.lr,
        epochs=epochs,
    )
    while not any(member_report.finished for member_report in population.train_until_report()):
        pass
    return population.member_model(member), population.member_result(member, stopped_early=False)
