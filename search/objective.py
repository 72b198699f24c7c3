"""The Optuna objective: build the sampled MLP, train it, report, prune, store artifacts.

Every trial trains on the study's data (seeded by the study seed) from initial weights seeded
by its own trial seed, so ``search.reproduce`` can retrain it from the stored parameters alone.
"""

import logging
import tempfile
from pathlib import Path

import optuna
import torch

from ann.data import QuadraticData, make_data
from ann.model import build_mlp
from ann.plots import save_fit, save_loss_curve
from ann.training import NonFiniteLossError, Report, ReportCallback, TrainingResult, train
from search.space import NetworkConfig, suggest_params
from search.study import StudySettings

logger = logging.getLogger(__name__)

FAIL_REASON_ATTR = "fail_reason"
ENGINE_ATTR = "engine"


def initial_model(config: NetworkConfig, init_seed: int) -> torch.nn.Sequential:
    """The network of ``config`` with the initial weights that ``init_seed`` draws."""
    return build_mlp(config.hidden_widths, torch.Generator().manual_seed(init_seed))


def train_network(
    config: NetworkConfig,
    data: QuadraticData,
    *,
    init_seed: int,
    settings: StudySettings,
    device: torch.device,
    epochs: int | None = None,
    on_report: ReportCallback | None = None,
) -> tuple[torch.nn.Sequential, TrainingResult]:
    """Build the network of ``config`` from ``init_seed`` and train it on ``data``."""
    model = initial_model(config, init_seed)
    result = train(
        model,
        data,
        optimizer_name=config.optimizer,
        lr=config.lr,
        epochs=epochs or settings.epochs,
        report_every=settings.report_every,
        device=device,
        on_report=on_report,
    )
    return model, result


def save_trial_files(
    model: torch.nn.Module, result: TrainingResult, data: QuadraticData, folder: Path, title: str
) -> list[Path]:
    """Write a trial's fit plot, loss curve and weights into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "weights.pt"
    torch.save({key: value.cpu() for key, value in model.state_dict().items()}, weights)
    return [
        save_fit(model, data, folder / "fit.png", title=f"{title}: fit"),
        save_loss_curve(
            result.loss_curve,
            folder / "loss_curve.png",
            noise_floor_l1=data.noise_floor_l1,
            title=f"{title}: training loss",
        ),
        weights,
    ]


class Objective:
    """Callable objective for ``study.ask()`` trials; returns the final validation L1.

    Raises ``optuna.TrialPruned`` when the pruner stops the trial, and
    :class:`ann.training.NonFiniteLossError` (with the reason stored in the trial's user
    attribute ``fail_reason``) when training diverges.

    Its steps (:meth:`start`, :meth:`record_result`, :meth:`record_divergence`,
    :meth:`upload_artifacts`) are public so that the fused engine stores its trials exactly as
    this one-trial engine does.
    """

    def __init__(
        self,
        settings: StudySettings,
        device: torch.device,
        artifact_store: optuna.artifacts.FileSystemArtifactStore | None,
    ) -> None:
        self.settings = settings
        self.device = device
        self.artifact_store = artifact_store
        self.data = make_data(settings.seed)[0].to(device)

    def __call__(self, trial: optuna.Trial) -> float:
        config, init_seed = self.start(trial)

        def report_and_ask_pruner(report: Report) -> bool:
            trial.report(report.val_l1, report.epoch)
            return trial.should_prune()

        try:
            model, result = train_network(
                config,
                self.data,
                init_seed=init_seed,
                settings=self.settings,
                device=self.device,
                on_report=report_and_ask_pruner,
            )
        except NonFiniteLossError as error:
            self.record_divergence(trial, error)
            raise

        self.record_result(trial, result)
        if result.stopped_early:
            # TODO: pruned trials keep their curve (intermediate values) but upload no artifacts.
            raise optuna.TrialPruned(f"pruned at epoch {result.epochs_run}")

        self.upload_artifacts(trial, model, result, config)
        return result.val_l1

    def start(self, trial: optuna.Trial, engine: str = "eager") -> tuple[NetworkConfig, int]:
        """Sample the trial's network and store its seed, device, engine and noise floor."""
        config = suggest_params(trial)
        # A retry of a crashed trial inherits its user attrs, seed included.
        init_seed = trial.user_attrs.get("seed", self.settings.trial_seed(trial.number))
        trial.set_user_attr("seed", init_seed)
        trial.set_user_attr("device", str(self.device))
        trial.set_user_attr(ENGINE_ATTR, engine)
        trial.set_user_attr("noise_floor_l1", self.data.noise_floor_l1)
        return config, init_seed

    def record_result(self, trial: optuna.Trial, result: TrainingResult) -> None:
        """Store how training went: last train loss, epochs run, seconds."""
        trial.set_user_attr("final_train_l1", result.final_train_l1)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("seconds", result.seconds)

    def record_divergence(self, trial: optuna.Trial, error: NonFiniteLossError) -> None:
        """Store why and when training diverged."""
        trial.set_user_attr(FAIL_REASON_ATTR, str(error))
        trial.set_user_attr("epochs_run", error.epoch)

    def upload_artifacts(
        self,
        trial: optuna.Trial,
        model: torch.nn.Module,
        result: TrainingResult,
        config: NetworkConfig,
    ) -> None:
        """Upload the fit plot, loss curve and weights of a completed trial (if there is a
        store)."""
        if self.artifact_store is None:
            return

        title = f"trial {trial.number} ({config.describe()})"
        with tempfile.TemporaryDirectory() as folder:
            for path in save_trial_files(model, result, self.data, Path(folder), title):
                optuna.artifacts.upload_artifact(
                    artifact_store=self.artifact_store,
                    file_path=str(path),
                    study_or_trial=trial,
                )
