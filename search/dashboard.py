"""optuna-dashboard for a study: the notes that tell its story, and serving it on 127.0.0.1.

The study note says what was fitted, what the baseline scored, how close the best trial got to
the noise floor and which command reproduces it; the baseline trial gets a note of its own so
that it is easy to find in the trial list. Notes are rewritten at the end of every run.
"""

import logging
import shlex
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from optuna_dashboard import save_note

from ann.data import N_POINTS, NOISE_STD, X_HIGH, X_LOW
from search.space import NetworkConfig
from search.storage import DEFAULT_STORAGE, DEFAULT_STUDY, StorageLocation
from search.study import stored_settings
from search.summary import baseline_trial, best_trial, dashboard_command, study_noise_floor

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT_S = 30


def _study_flags(study_name: str, location: StorageLocation) -> list[str]:
    flags = [] if study_name == DEFAULT_STUDY else ["--study", study_name]
    if location.url != DEFAULT_STORAGE:
        flags += ["--storage", location.display_url]
    return flags


def reproduce_command(study_name: str, location: StorageLocation, trial_number: int) -> str:
    """The ``search.reproduce`` command line that retrains one trial of this study."""
    return shlex.join(
        [
            "python",
            "-m",
            "search.reproduce",
            "--trial",
            str(trial_number),
            *_study_flags(study_name, location),
        ]
    )


def report_command(study_name: str, location: StorageLocation) -> str:
    """The ``search.report`` command line that draws this study's figures."""
    return shlex.join(["python", "-m", "search.report", *_study_flags(study_name, location)])


def _describe(study: optuna.Study, trial: FrozenTrial, noise_floor: float | None) -> str:
    network = NetworkConfig.from_params(trial.params).describe()
    # The dashboard's own link to a trial; it addresses studies by their storage id.
    url = f"/dashboard/studies/{study._study_id}/trials?numbers={trial.number}"
    link = f"[trial {trial.number}]({url})"
    if trial.value is None:
        return f"{link}, {network}: {trial.state.name.lower()}, no validation L1"
    ratio = f" ({trial.value / noise_floor:.2f}x the noise floor)" if noise_floor else ""
    return f"{link}, {network}: validation L1 **{trial.value:.4f}**{ratio}"


def study_note(study: optuna.Study, location: StorageLocation) -> str:
    """The study note, in Markdown: data, baseline, noise floor, best result, commands."""
    settings = stored_settings(study)
    trials = study.get_trials(deepcopy=False)
    baseline, best = baseline_trial(study), best_trial(study)
    noise_floor = study_noise_floor(study)
    counts = ", ".join(
        f"{sum(t.state == state for t in trials)} {state.name.lower()}"
        for state in TrialState
        if any(t.state == state for t in trials)
    )

    lines = [
        f"## Study {study.study_name}: a small ReLU MLP fits y = x^2 + 3",
        "",
        f"- **Data**: {N_POINTS:,} training points, x uniform on [{X_LOW:g}, {X_HIGH:g}], "
        f"y = x^2 + 3 plus N(0, {NOISE_STD:g}) noise, drawn from seed {settings.seed}; "
        f"{N_POINTS:,} validation points from an independent generator. Every trial trains "
        f"full-batch with L1 loss for {settings.epochs:,} epochs and reports validation L1 "
        f"every {settings.report_every} epochs.",
    ]
    if noise_floor is not None:
        lines.append(
            f"- **Noise floor**: {noise_floor:.4f}, the validation L1 of x^2 + 3 itself; "
            "no model can expect to score below it."
        )
    if baseline is not None:
        described = _describe(study, baseline, noise_floor)
        lines.append(f"- **Baseline**, the PyTorch tutorial's network: {described}.")
    if best is not None:
        lines.append(f"- **Best**: {_describe(study, best, noise_floor)}.")
    lines.append(f"- **Trials**: {len(trials)} ({counts or 'none yet'}).")
    lines += ["", "Commands, from the project's folder:", ""]
    if best is not None:
        command = reproduce_command(study.study_name, location, best.number)
        lines.append(f"- retrain the best trial and compare: `{command}`")
    lines += [
        f"- draw the report figures: `{report_command(study.study_name, location)}`",
        f"- browse: `{dashboard_command(location)}`",
    ]
    return "\n".join(lines) + "\n"


def baseline_note(baseline: FrozenTrial, best: FrozenTrial | None) -> str:
    """The baseline trial's note: what it is, and how the best trial compares."""
    lines = [
        "## The tutorial's baseline",
        "",
        "This is the network of the PyTorch tutorial the search starts from: ReLU MLP "
        "1-6-10-6-1, `optim.SGD(lr=0.002)`, L1 loss. Its weights are initialized from this "
        "trial's seed (user attr `seed`).",
    ]
    if best is not None and best.number != baseline.number and best.value and baseline.value:
        lines += [
            "",
            f"The best trial so far, trial {best.number}, reaches validation L1 "
            f"{best.value:.4f}, {baseline.value / best.value:.1f}x lower than this one.",
        ]
    return "\n".join(lines) + "\n"


def write_notes(study: optuna.Study, location: StorageLocation) -> None:
    """Write (or rewrite) the study note and the baseline trial's note in the dashboard.

    Raises:
        UsageError: the study was not made by search.run (it has no stored settings).
    """
    save_note(study, study_note(study, location))
    baseline = baseline_trial(study)
    if baseline is None:
        return

    # save_note takes a live Trial; this one only addresses the finished baseline trial.
    note = baseline_note(baseline, best_trial(study))
    save_note(optuna.Trial(study, baseline._trial_id), note)
    logger.info("wrote the dashboard notes of study %r", study.study_name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_dashboard(location: StorageLocation, log_path: Path) -> Iterator[str]:
    """Run the summary's optuna-dashboard command on a free port of 127.0.0.1.

    Yields the base URL once the dashboard answers; stops it on exit. Its output goes to
    ``log_path``.

    Raises:
        RuntimeError: optuna-dashboard is not installed, exits, or does not answer in time.
    """
    command = shlex.split(dashboard_command(location))
    executable = shutil.which(command[0])
    if executable is None:
        raise RuntimeError("optuna-dashboard is not on PATH; pip install optuna-dashboard")

    port = _free_port()
    url = f"http://{HOST}:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [executable, *command[1:], "--port", str(port)], stdout=log, stderr=log
        )
        try:
            _wait_until_answering(process, url, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_answering(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"optuna-dashboard exited with code {process.returncode}: "
                f"{log_path.read_text(errors='replace').strip()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/api/meta", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"optuna-dashboard did not answer on {url} within {START_TIMEOUT_S} s")
