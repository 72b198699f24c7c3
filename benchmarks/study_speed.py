"""The default 100-trial study, one-trial engine against fused engine, same seeds.

    python benchmarks/study_speed.py                   # the README's table: ~25 min on 2 cores
    python benchmarks/study_speed.py --seeds 0 --trials 20 --epochs 2000   # a short run

Each configuration runs ``python -m search.run`` on a fresh SQLite study with the default
pruner and sampler, and the figures are its wall time (process start to exit, imports
included), its best validation L1 and how many trials were pruned. The configurations run one
after another, seed by seed, so that machine load hits them alike. Saves a PNG plot.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = {
    "eager --jobs 2": ["--engine", "eager", "--jobs", "2"],
    "fused --jobs 2": ["--engine", "fused", "--jobs", "2"],
    "fused --threads 2": ["--engine", "fused", "--threads", "2"],
    "fused --jobs 2 --population 8": ["--engine", "fused", "--jobs", "2", "--population", "8"],
}
DEFAULT_CONFIGURATIONS = ["eager --jobs 2", "fused --jobs 2"]


def run_study(options: list[str], seed: int, trials: int, epochs: int | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "search.run", "--trials", str(trials)]
        command += ["--seed", str(seed), "--no-report", *options]
        if epochs is not None:
            command += ["--epochs", str(epochs)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        started = time.perf_counter()
        subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - started

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name="ann", storage=f"sqlite:///{folder}/studies/ann.db")
        pruned = sum(t.state == TrialState.PRUNED for t in study.trials)
        epochs_run = sum(t.user_attrs.get("epochs_run", 0) for t in study.trials)
        return {
            "seconds": seconds,
            "best": study.best_value,
            "pruned": pruned,
            "epochs": epochs_run,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=None, help="default: the study's 10000")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(CONFIGURATIONS),
        default=None,
        help=f"configurations to run (default: {', '.join(DEFAULT_CONFIGURATIONS)})",
    )
    parser.add_argument("--plot", type=Path, default=Path("docs/study_speed.png"))
    args = parser.parse_args()
    names = args.only or DEFAULT_CONFIGURATIONS

    results: dict[str, list[dict]] = {name: [] for name in names}
    print(
        f"{'seed':>4}  {'configuration':<18} {'wall s':>8} {'best val L1':>12} "
        f"{'pruned':>7} {'epochs run':>11}"
    )
    for seed in args.seeds:
        for name in names:
            result = run_study(CONFIGURATIONS[name], seed, args.trials, args.epochs)
            results[name].append(result)
            print(
                f"{seed:>4}  {name:<18} {result['seconds']:>8.1f} {result['best']:>12.4f} "
                f"{result['pruned']:>7} {result['epochs']:>11}",
                flush=True,
            )

    reference = names[0]
    print(f"\nmeans over seeds {args.seeds} (wall-time ratio against {reference!r}):")
    for name in names:
        seconds = statistics.mean(r["seconds"] for r in results[name])
        ratios = [
            r["seconds"] / ref["seconds"]
            for r, ref in zip(results[name], results[reference], strict=True)
        ]
        best_gap = [
            r["best"] - ref["best"]
            for r, ref in zip(results[name], results[reference], strict=True)
        ]
        print(
            f"  {name:<18} {seconds:8.1f} s  ratio {statistics.mean(ratios):.2f}  "
            f"best val L1 minus reference: {', '.join(f'{g:+.4f}' for g in best_gap)}"
        )

    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        positions = [seed + index * width for seed in range(len(args.seeds))]
        axis.bar(positions, [r["seconds"] for r in results[name]], width, label=name)
    axis.set_xticks([seed + 0.4 - width / 2 for seed in range(len(args.seeds))])
    axis.set_xticklabels([f"seed {seed}" for seed in args.seeds])
    axis.set(ylabel="wall time, s", title=f"{args.trials}-trial study")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
