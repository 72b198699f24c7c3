"""Training-loop speed and --jobs scaling, measured side by side in one run.

    python benchmarks/search_speed.py            # about two minutes on 2 cores
    python benchmarks/search_speed.py --quick    # a smoke run

Part 1 times the baseline network (1-6-10-6-1, SGD) for the tutorial's own loop and for
``ann.training.train``, interleaved, on one torch thread, and prints seconds per 1,000 epochs.
Part 2 runs the same short study with ``--jobs 1`` and ``--jobs 2`` and prints trials per minute.
Figures are ratios within this run; absolute seconds move with the machine's load.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from torch import nn, optim

from ann.data import make_data
from ann.model import TUTORIAL_WIDTHS, build_mlp
from ann.training import train

REPO_ROOT = Path(__file__).resolve().parent.parent


def tutorial_loop(epochs: int, seed: int) -> float:
    """The tutorial's loop as written, on the tutorial's data; returns seconds."""
    data, generator = make_data(seed)
    model = build_mlp(TUTORIAL_WIDTHS, generator)
    loss_func = nn.L1Loss()
    optimizer = optim.SGD(model.parameters(), lr=0.002)
    loss_list = []
    started = time.perf_counter()
    for _ in range(epochs):
        optimizer.zero_grad()
        output = model(data.x)
        loss = loss_func(output, data.y)
        loss.backward()
        optimizer.step()
        loss_list.append(loss)
    return time.perf_counter() - started


def our_loop(epochs: int, seed: int) -> float:
    """ann.training.train on the same network, validation every 100 epochs; returns seconds."""
    data, generator = make_data(seed)
    model = build_mlp(TUTORIAL_WIDTHS, generator)
    started = time.perf_counter()
    train(
        model,
        data,
        optimizer_name="SGD",
        lr=0.002,
        epochs=epochs,
        report_every=100,
        device=torch.device("cpu"),
    )
    return time.perf_counter() - started


def compare_loops(epochs: int, repeats: int) -> None:
    torch.set_num_threads(1)
    tutorial_loop(200, 0)
    our_loop(200, 0)
    timings: dict[str, list[float]] = {"tutorial loop": [], "ann.training.train": []}
    for repeat in range(repeats):
        timings["tutorial loop"].append(tutorial_loop(epochs, repeat))
        timings["ann.training.train"].append(our_loop(epochs, repeat))

    print(f"Part 1: baseline network, {epochs} epochs x {repeats} repeats, 1 thread")
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, median in medians.items():
        print(f"  {name:20s} {1000 * median / epochs:8.3f} s per 1,000 epochs (median)")
    ratio = medians["ann.training.train"] / medians["tutorial loop"]
    print(f"  ours / tutorial      {ratio:8.3f}  (below 1 means ours is faster)")


def trials_per_minute(jobs: int, n_trials: int, epochs: int, folder: Path) -> tuple[float, float]:
    """Trials per minute over the command's wall clock, and between first start and last end."""
    command = [
        sys.executable, "-m", "search.run", "--trials", str(n_trials), "--jobs", str(jobs),
        "--epochs", str(epochs), "--report-every", "100", "--pruner", "none",
        "--sampler", "random", "--engine", "eager",
        "--storage", f"sqlite:///{folder / f'jobs{jobs}.db'}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=folder, capture_output=True)
    wall_s = time.perf_counter() - started

    trials = optuna.load_study(study_name="ann", storage=command[-1]).trials
    first_start = min(trial.datetime_start for trial in trials)
    last_end = max(trial.datetime_complete for trial in trials)
    return n_trials / wall_s * 60, n_trials / (last_end - first_start).total_seconds() * 60


def compare_jobs(n_trials: int, epochs: int) -> None:
    print(f"Part 2: {n_trials} trials x {epochs} epochs, random sampler, no pruner, wall clock")
    print("             trials/min (wall)  trials/min (first start to last end)")
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        for jobs in (1, 2):
            rates[jobs] = trials_per_minute(jobs, n_trials, epochs, Path(folder))
            print(f"  --jobs {jobs}   {rates[jobs][0]:17.1f}  {rates[jobs][1]:17.1f}")
    wall, steady = (rates[2][i] / rates[1][i] for i in range(2))
    print(f"  speed-up   {wall:16.2f}x  {steady:16.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    if args.quick:
        compare_loops(epochs=300, repeats=2)
        compare_jobs(n_trials=2, epochs=200)
        return
    compare_loops(epochs=3000, repeats=5)
    compare_jobs(n_trials=16, epochs=4000)


if __name__ == "__main__":
    main()
