"""The end-of-run summary: baseline against best trial, trial counts, where to look next."""

import shlex
from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.space import NetworkConfig
from search.storage import StorageLocation
from search.study import BASELINE_ATTR

ROWS = (
    ("val L1", "value"),
    ("train L1", "final_train_l1"),
    ("network", "network"),
    ("epochs", "epochs_run"),
    ("seconds", "seconds"),
)


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's baseline trial (user attr ``baseline``), preferring a completed one.

    A baseline whose worker died is retried as a new trial with the same user attrs, so a
    study can hold more than one.
    """
    baselines = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(BASELINE_ATTR)]
    completed = [t for t in baselines if t.state == TrialState.COMPLETE]
    candidates = completed or baselines
    return candidates[0] if candidates else None


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best completed trial, if there is one."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def study_noise_floor(study: optuna.Study) -> float | None:
    """The noise floor stored in the trials' user attr ``noise_floor_l1``, if any has it."""
    for trial in study.get_trials(deepcopy=False):
        if "noise_floor_l1" in trial.user_attrs:
            return float(trial.user_attrs["noise_floor_l1"])
    return None


def describe_trial(trial: FrozenTrial | None) -> dict[str, Any] | None:
    """A trial's result as plain data, for the table and for ``--json``."""
    if trial is None:
        return None
    network = NetworkConfig.from_params(trial.params).describe() if trial.params else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        "network": network,
        "final_train_l1": trial.user_attrs.get("final_train_l1"),
        "epochs_run": trial.user_attrs.get("epochs_run"),
        "seconds": trial.user_attrs.get("seconds"),
        "seed": trial.user_attrs.get("seed"),
    }


def dashboard_command(location: StorageLocation) -> str:
    """The optuna-dashboard command line that browses this study (any password masked)."""
    return shlex.join(
        [
            "optuna-dashboard",
            location.display_url,
            "--artifact-dir",
            str(location.artifact_dir),
            "--host",
            "127.0.0.1",
        ]
    )


def summarize(study: optuna.Study, location: StorageLocation, **extra: Any) -> dict[str, Any]:
    """Everything the summary shows, as JSON-ready data."""
    trials = study.get_trials(deepcopy=False)
    return {
        "study": study.study_name,
        "storage": location.display_url,
        "artifact_dir": str(location.artifact_dir),
        "n_trials": len(trials),
        "states": dict(Counter(trial.state.name for trial in trials)),
        "noise_floor_l1": study_noise_floor(study),
        "baseline": describe_trial(baseline_trial(study)),
        "best": describe_trial(best_trial(study)),
        "dashboard_command": dashboard_command(location),
        **extra,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the lines a person reads at the end of a run."""
    columns = {"baseline": summary["baseline"], "best": summary["best"]}
    headers = [""] + [
        f"{name} (trial {trial['number']})" if trial else f"{name} (none)"
        for name, trial in columns.items()
    ]
    rows = [headers] + [
        [label] + [_cell(trial and trial[key]) for trial in columns.values()]
        for label, key in ROWS
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]

    states = ", ".join(
        f"{count} {state.lower()}" for state, count in sorted(summary["states"].items())
    )
    return "\n".join(
        [
            f"Study {summary['study']!r} in {summary['storage']}",
            *table,
            f"Noise floor (validation L1 of y = x^2 + 3): {_cell(summary['noise_floor_l1'])}",
            f"Trials: {summary['n_trials']} ({states})",
            f"Artifacts: {summary['artifact_dir']}",
            f"Browse: {summary['dashboard_command']}",
        ]
    )
