"""The fused engine: many trials of one study train at once in one :class:`Population`.

Each member slot of the population holds one trial. The loop asks the study for a trial per
free slot, trains the whole population up to the next report epoch, reports every member's
validation L1 to its trial, prunes the members whose trial says so, tells the finished and
pruned trials, and refills their slots, until the budgets run out and the last members finish.

Trials are stored exactly as the one-trial engine (:class:`~search.objective.Objective`) stores
them: same parameters, user attrs, intermediate values and artifacts, so ``search.reproduce``
retrains any of them with either engine.
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
from search.study import StudySettings
from search.worker import (
    StudyCap,
    TrialBudget,
    ask,
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
"""User attr of a fused trial: the stack it trained in. Training in a stack of the same
widths reproduces it to the last bit, whatever the other members were."""


def choose_engine(requested: str, device: torch.device) -> str:
    """The engine ``--engine requested`` means on ``device``.

    ``auto`` picks the fused engine on the CPU and CUDA, where it measured faster than the
    one-trial loop at every population size (benchmarks/population_speed.py), and the
    one-trial engine elsewhere (MPS), where the fused one is untested.
    """
    if requested != "auto":
        return requested
    return "fused" if device.type in FUSED_DEVICE_TYPES else "eager"


@dataclass
class RunningTrial:
    """A trial that holds a place in the population, and the thread sending its heartbeats."""

    trial: optuna.Trial
    heartbeat: BaseHeartbeatThread
    config: NetworkConfig | None = None
    place: "Place | None" = None


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

    def run(self) -> None:
        """Train until the budgets are spent and every started trial is told.

        Any exception, :class:`~search.worker.StopRequested` included, fails the running
        trials and propagates.
        """
        budget_left = True
        try:
            while True:
                if budget_left:
                    budget_left = self._fill()
                if not self.running:
                    return

                for widths, stack in list(self.stacks.items()):
                    if stack.n_members:
                        for member_report in stack.train_until_report():
                            self._handle((widths, member_report.member), member_report)
        except BaseException:
            ignore_stop_signals()
            starting = [self.starting] if self.starting is not None else []
            for running in starting + [self._free(place) for place in list(self.running)]:
                running.heartbeat.join()
                fail_interrupted_trial(self.study, running.trial)
            raise

    def _fill(self) -> bool:
        """Start trials until the population is full; ``False`` once a budget says no more."""
        while len(self.running) < self.size:
            if not self.budget.claim():
                return False
            fail_stale_trials(self.study)
            with stop_signals_deferred():
                trial = self.cap.ask(self.study) if self.cap is not None else ask(self.study)
                if trial is None:
                    return False
                heartbeat = get_heartbeat_thread(trial._trial_id, self.study._storage)
                heartbeat.start()
                self.starting = RunningTrial(trial, heartbeat)

            config, init_seed = self.objective.start(trial, engine="fused")
            widths = padded_widths(config)
            trial.set_user_attr(PADDED_WIDTHS_ATTR, list(widths))
            member = self._stack(widths).add(
                initial_model(config, init_seed),
                optimizer_name=config.optimizer,
                lr=config.lr,
                epochs=self.objective.settings.epochs,
            )
            self.starting.config, self.starting.place = config, (widths, member)
            self.running[self.starting.place] = self.starting
            self.starting = None
        return True

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

    def _handle(self, key: Place, member_report: MemberReport) -> None:
        report = member_report.report
        trial = self.running[key].trial
        stack = self.stacks[key[0]]
        try:
            if not report.is_finite:
                error = NonFiniteLossError(report.epoch, report.train_l1, report.val_l1)
                logger.warning("trial %d failed: %s", trial.number, error)
                self.objective.record_divergence(trial, error)
                self._finish(key, state=TrialState.FAIL)
                return

            trial.report(report.val_l1, report.epoch)
            if member_report.finished:
                self._complete(key)
            elif trial.should_prune():
                result = stack.member_result(key[1], stopped_early=True)
                self.objective.record_result(trial, result)
                self._finish(key, state=TrialState.PRUNED)
        except optuna.exceptions.UpdateFinishedTrialError:
            running = self._free(key)
            running.heartbeat.join()
            log_take_over(running.trial)

    def _complete(self, key: Place) -> None:
        running = self.running[key]
        assert running.config is not None
        stack = self.stacks[key[0]]
        result = stack.member_result(key[1], stopped_early=False)
        self.objective.record_result(running.trial, result)
        model = stack.member_model(key[1])
        self.objective.upload_artifacts(running.trial, model, result, running.config)
        self._finish(key, values=result.val_l1)

    def _finish(self, key: Place, **outcome: Any) -> None:
        """Take the trial out of the population and tell it ``outcome``."""
        running = self._free(key)
        running.heartbeat.join()
        tell_unless_taken_over(self.study, running.trial, **outcome)
        if self.on_trial_finished is not None:
            self.on_trial_finished()

    def _free(self, place: Place) -> RunningTrial:
        """Take the trial at ``place`` out of its stack (its heartbeat still runs)."""
        running = self.running.pop(place)
        widths, member = place
        self.stacks[widths].remove(member)
        return running


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
