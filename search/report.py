"""The study report: PNG figures of a search, from the study and its artifacts alone.

    python -m search.report                          # studies/ann.db -> studies/report/ann/
    python -m search.report --study quick --out figures/

Figures: the optimization history with the baseline marked, the learning curves of every trial
(pruned ones faded), the parameter importances, a slice plot of each parameter, and the best
trial's fit next to the baseline's, rebuilt from their stored weights (nothing is retrained).
Every loss figure marks the noise floor. A figure that the study cannot support yet (the
importances need 2 completed trials) is skipped with the reason. The command also refreshes
the study's dashboard note.
"""

import contextlib
import logging
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from ann.data import X_HIGH, X_LOW, QuadraticData, make_data, true_function
from ann.model import build_mlp
from search import cli
from search.dashboard import write_notes
from search.errors import UsageError
from search.space import NetworkConfig
from search.storage import StorageLocation, locate_storage, open_storage
from search.study import stored_settings, study_exists
from search.summary import baseline_trial, best_trial, study_noise_floor

logger = logging.getLogger(__name__)

MIN_TRIALS_FOR_IMPORTANCES = 2
WEIGHTS_FILENAME = "weights.pt"
DPI = 100
FIGURE_SIZE = (7.0, 4.5)


@dataclass
class StudyReport:
    """The folder :func:`write_report` wrote into, its figures, and each skipped one's reason."""

    folder: Path
    figures: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the end of a run: where the figures are and what was skipped."""
        skipped = "".join(f"; skipped {name}: {reason}" for name, reason in self.skipped.items())
        return f"{self.folder} ({len(self.figures)} figures{skipped})"


def default_report_dir(location: StorageLocation, study_name: str) -> Path:
    """``report/<study>`` beside the artifact folder (by default ``studies/report/<study>``)."""
    return location.artifact_dir.parent / "report" / study_name


def load_trial_model(
    study: optuna.Study,
    trial: FrozenTrial,
    artifact_store: optuna.artifacts.FileSystemArtifactStore,
) -> torch.nn.Sequential | None:
    """Rebuild ``trial``'s network from its stored ``weights.pt``; ``None`` if it has none."""
    metas = optuna.artifacts.get_all_artifact_meta(trial, storage=study._storage)
    meta = next((m for m in metas if m.filename == WEIGHTS_FILENAME), None)
    if meta is None:
        return None

    model = build_mlp(NetworkConfig.from_params(trial.params).hidden_widths, torch.Generator())
    with artifact_store.open_reader(meta.artifact_id) as reader:
        model.load_state_dict(torch.load(reader, weights_only=True))
    return model.eval()


def _mark_noise_floor(axes: Axes, noise_floor: float | None) -> Line2D | None:
    if noise_floor is None:
        return None
    return axes.axhline(noise_floor, color="gray", linestyle="--", label="noise floor")


def _optuna_figure(plot: Callable[[], Axes | np.ndarray]) -> tuple[Figure, list[Axes]]:
    """Call one of Optuna's matplotlib plots; return its figure and axes."""
    # Optuna's matplotlib plots are experimental, and its importance evaluator warns about
    # small studies: both are expected in a report.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = plot()
    axes = list(result.flat) if isinstance(result, np.ndarray) else [result]
    figure = axes[0].get_figure()
    assert isinstance(figure, Figure)
    return figure, axes


def history_figure(
    study: optuna.Study, baseline: FrozenTrial | None, noise_floor: float | None
) -> Figure:
    """Optuna's optimization history, log scale, with the baseline and the noise floor."""
    figure, (axes,) = _optuna_figure(
        lambda: optuna.visualization.matplotlib.plot_optimization_history(
            study, target_name="validation L1"
        )
    )
    if baseline is not None and baseline.value is not None:
        axes.scatter(
            [baseline.number],
            [baseline.value],
            marker="*",
            s=250,
            color="black",
            zorder=5,
            label=f"baseline (trial {baseline.number})",
        )
    _mark_noise_floor(axes, noise_floor)
    axes.set(yscale="log", xlabel="trial")
    axes.legend()
    return figure


def learning_curves_figure(
    study: optuna.Study,
    baseline: FrozenTrial | None,
    best: FrozenTrial | None,
    noise_floor: float | None,
) -> Figure:
    """Validation L1 against epoch for every trial: pruned faded, baseline and best bold."""
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.add_subplot()
    highlighted = {t.number for t in (baseline, best) if t is not None}
    for trial in study.get_trials(deepcopy=False):
        if not trial.intermediate_values or trial.number in highlighted:
            continue
        epochs, values = zip(*sorted(trial.intermediate_values.items()), strict=True)
        if trial.state == TrialState.COMPLETE:
            axes.plot(epochs, values, color="tab:blue", alpha=0.6, linewidth=1)
        else:
            axes.plot(epochs, values, color="tab:gray", alpha=0.35, linewidth=0.8)

    handles = [
        Line2D([], [], color="tab:blue", alpha=0.6, label="completed"),
        Line2D([], [], color="tab:gray", alpha=0.4, label="pruned or failed"),
    ]
    for marked, color, name in ((baseline, "black", "baseline"), (best, "tab:red", "best")):
        if marked is None or not marked.intermediate_values:
            continue
        epochs, values = zip(*sorted(marked.intermediate_values.items()), strict=True)
        (line,) = axes.plot(
            epochs, values, color=color, linewidth=2, label=f"{name} (trial {marked.number})"
        )
        handles.append(line)
    floor = _mark_noise_floor(axes, noise_floor)
    if floor is not None:
        handles.append(floor)
    axes.set(
        xlabel="epoch",
        ylabel="validation L1",
        yscale="log",
        title=f"Learning curves of {len(study.get_trials(deepcopy=False))} trials",
    )
    axes.legend(handles=handles)
    return figure


def importances_figure(study: optuna.Study) -> Figure:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA)."""
    figure, _ = _optuna_figure(
        lambda: optuna.visualization.matplotlib.plot_param_importances(
            study, target_name="validation L1"
        )
    )
    figure.tight_layout()
    return figure


def slice_figure(study: optuna.Study, noise_floor: float | None) -> Figure:
    """Optuna's slice plot: validation L1 against each parameter, log scale."""
    # Optuna sizes the figure from rcParams (half the width per parameter) and places its
    # colorbar from the subplot margins, so both are set before it draws.
    with plt.rc_context(
        {
            "figure.figsize": (4.4, 4.0),
            "figure.subplot.left": 0.07,
            "figure.subplot.right": 0.97,
            "figure.subplot.bottom": 0.15,
        }
    ):
        figure, all_axes = _optuna_figure(
            lambda: optuna.visualization.matplotlib.plot_slice(study, target_name="validation L1")
        )
    for axes in all_axes:
        axes.set_yscale("log")
        _mark_noise_floor(axes, noise_floor)
    return figure


def fit_figure(
    panels: Sequence[tuple[str, FrozenTrial, torch.nn.Module]], data: QuadraticData
) -> Figure:
    """The training data with each panel's model and the true function over it."""
    figure = Figure(figsize=(5 * len(panels), 4.2), layout="constrained")
    grid = torch.linspace(X_LOW, X_HIGH, 301).unsqueeze(1)
    first: Axes | None = None
    for index, (name, trial, model) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1, sharey=first)
        first = first or axes
        with torch.no_grad():
            prediction = model(grid)
        axes.scatter(data.x, data.y, s=4, color="tab:blue", alpha=0.3, label="training data")
        axes.plot(grid, true_function(grid), color="gray", linestyle="--", label="x^2 + 3")
        axes.plot(grid, prediction, color="tab:red", linewidth=2, label="model")
        network = NetworkConfig.from_params(trial.params).describe()
        axes.set(
            xlabel="x",
            ylabel="y",
            title=f"{name}, trial {trial.number}: {network}\nvalidation L1 {trial.value:.4f}",
        )
        axes.legend(loc="upper center")
    return figure


def _fit_panels(
    study: optuna.Study,
    baseline: FrozenTrial | None,
    best: FrozenTrial | None,
    artifact_store: optuna.artifacts.FileSystemArtifactStore,
) -> list[tuple[str, FrozenTrial, torch.nn.Module]]:
    panels: list[tuple[str, FrozenTrial, torch.nn.Module]] = []
    named = [("baseline", baseline), ("best", best)]
    if baseline is not None and best is not None and baseline.number == best.number:
        named = [("baseline and best", baseline)]
    for name, trial in named:
        if trial is None or trial.state != TrialState.COMPLETE:
            continue
        try:
            model = load_trial_model(study, trial, artifact_store)
        except (ArtifactNotFound, OSError, RuntimeError, pickle.UnpicklingError) as error:
            logger.warning("cannot load the weights of trial %d: %s", trial.number, error)
            continue
        if model is None:
            logger.warning("trial %d has no %s artifact", trial.number, WEIGHTS_FILENAME)
            continue
        panels.append((name, trial, model))
    return panels


def _draw(make: Callable[[], Figure], path: Path) -> str | None:
    """Draw one figure into ``path``; return why that failed, or ``None``."""
    figure = None
    # Optuna's plots switch pyplot to its ggplot style: keep that to their own figures.
    with plt.rc_context({"figure.figsize": FIGURE_SIZE}):
        try:
            figure = make()
            if not isinstance(figure.canvas, FigureCanvasAgg):
                FigureCanvasAgg(figure)  # our own figures; Optuna's have pyplot's Agg canvas
            figure.savefig(path, dpi=DPI)
            return None
        except Exception as error:  # a degenerate study, a full disk: keep the other figures
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            reason = f"{type(error).__name__}: {error}"
            traceback = not isinstance(error, OSError)
            logger.warning("report: skipped %s: %s", path.name, reason, exc_info=traceback)
            return reason
        finally:
            if figure is not None:
                plt.close(figure)


def write_report(
    study: optuna.Study,
    out_dir: Path,
    *,
    artifact_store: optuna.artifacts.FileSystemArtifactStore | None,
) -> StudyReport:
    """Write the report's PNG figures into ``out_dir``.

    ``artifact_store`` holds the trials' weights for the fit figure (``None`` skips it); the
    data under the fit comes from the study's stored settings. A figure the study cannot
    support yet is skipped (logged as info), one whose plot fails is skipped with a logged
    warning; the reasons are in the returned report. A failing figure never loses the others,
    nor the run that asked for the report.
    """
    # Optuna's plots go through pyplot: Agg keeps them off any window system (switching
    # closes pyplot's open figures; the entry points have none).
    plt.switch_backend("agg")
    report = StudyReport(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        logger.warning("report: cannot create %s: %s", out_dir, error)
        report.skipped["all figures"] = f"cannot create the folder: {error}"
        return report

    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    baseline, best = baseline_trial(study), best_trial(study)
    noise_floor = study_noise_floor(study)
    panels = _fit_panels(study, baseline, best, artifact_store) if artifact_store else []
    no_weights = "no artifact store to load weights from" if artifact_store is None else None
    if no_weights is None and not panels:
        no_weights = "no stored weights of the baseline or the best trial"

    no_completed = None if completed else "no completed trials yet"
    too_few = len(completed) < MIN_TRIALS_FOR_IMPORTANCES
    plans: list[tuple[str, str | None, Callable[[], Figure]]] = [
        ("history.png", no_completed, lambda: history_figure(study, baseline, noise_floor)),
        (
            "learning_curves.png",
            None if any(t.intermediate_values for t in trials) else "no trial has reported yet",
            lambda: learning_curves_figure(study, baseline, best, noise_floor),
        ),
        (
            "param_importances.png",
            f"needs {MIN_TRIALS_FOR_IMPORTANCES} completed trials, found {len(completed)}"
            if too_few
            else None,
            lambda: importances_figure(study),
        ),
        ("slice.png", no_completed, lambda: slice_figure(study, noise_floor)),
        (
            "fit.png",
            no_weights,
            lambda: fit_figure(panels, make_data(stored_settings(study).seed)[0]),
        ),
    ]

    for name, skip_reason, make in plans:
        if skip_reason is not None:
            logger.info("report: skipped %s: %s", name, skip_reason)
        else:
            skip_reason = _draw(make, out_dir / name)
        if skip_reason is None:
            report.figures.append(out_dir / name)
        else:
            report.skipped[name] = skip_reason
    return report


def report_study(
    study: optuna.Study, location: StorageLocation, out_dir: Path | None = None
) -> StudyReport:
    """Draw the report into ``out_dir`` (default :func:`default_report_dir`) from the
    location's artifacts, and rewrite the study's dashboard notes: what a run ends with.

    Raises:
        UsageError: the study was not made by search.run (it has no stored settings).
    """
    stored_settings(study)
    store = None
    if location.artifact_dir.is_dir():
        store = optuna.artifacts.FileSystemArtifactStore(str(location.artifact_dir))

    report = write_report(
        study, out_dir or default_report_dir(location, study.study_name), artifact_store=store
    )
    write_notes(study, location)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.make_parser("python -m search.report", __doc__)
    cli.add_study_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="figures go here (default: report/<study> beside a SQLite file)",
    )
    args = parser.parse_args(argv)
    location = locate_storage(args.storage, artifact_dir=args.artifact_dir, must_exist=True)

    storage = open_storage(location)
    if not study_exists(storage, args.study):
        names = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        raise UsageError(f"no study named {args.study!r} in this storage (studies: {names})")
    study = optuna.load_study(study_name=args.study, storage=storage)
    report = report_study(study, location, args.out)

    print(f"report of study {args.study!r}: {len(report.figures)} figures in {report.folder}")
    for path in report.figures:
        print(f"  {path}")
    for name, reason in report.skipped.items():
        print(f"  skipped {name}: {reason}")
    return 0


if __name__ == "__main__":
    cli.run_main(main)
