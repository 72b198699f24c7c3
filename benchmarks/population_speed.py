"""Network-epochs per second: the one-trial loop against populations of K networks.

    python benchmarks/population_speed.py            # about five minutes on 2 cores
    python benchmarks/population_speed.py --quick    # a smoke run

For each workload (the baseline network, and a mix sampled from the default search space) it
times:
- the one-trial loop as Optuna's PyTorch example writes it (zero_grad, forward, L1 loss,
  backward, step), one process per core, each on one torch thread;
- ``ann.population.Population`` with K in {1, 8, 32, 128, 512}, in one process on 1 and on 2
  torch threads, and (for 2 cores) as two processes of one thread each. The baseline networks
  share one stack of their exact widths; mixed networks train in the fused engine's stacks
  (``search.space.padded_widths``).
It also times ``torch.compile`` of the population's epoch (compile time counted) on one case.
With CUDA, the population runs there too, up to K = 4096.

Prints a table and saves a PNG plot (``--plot``). Figures are ratios within this run; absolute
numbers move with the machine's load.
"""

import argparse
import math
import multiprocessing
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ann.data import make_data  # noqa: E402
from ann.model import TUTORIAL_WIDTHS, build_mlp  # noqa: E402
from ann.population import Population  # noqa: E402
from search.space import (  # noqa: E402
    LR_RANGE,
    MAX_LAYERS,
    OPTIMIZER_NAMES,
    UNITS_RANGE,
    NetworkConfig,
    padded_widths,
)

Network = tuple[tuple[int, ...], str, float]
POPULATION_SIZES = (1, 8, 32, 128, 512)
CUDA_SIZES = (1, 32, 512, 4096)


def baseline_networks(n: int) -> list[Network]:
    return [(TUTORIAL_WIDTHS, "SGD", 0.002)] * n


def mixed_networks(n: int, seed: int = 0) -> list[Network]:
    """Networks drawn uniformly from the default search space."""
    rng = random.Random(seed)
    networks = []
    for _ in range(n):
        depth = rng.randint(1, MAX_LAYERS)
        widths = tuple(rng.randint(*UNITS_RANGE) for _ in range(depth))
        lr = 10 ** rng.uniform(math.log10(LR_RANGE[0]), math.log10(LR_RANGE[1]))
        networks.append((widths, rng.choice(OPTIMIZER_NAMES), lr))
    return networks


def one_trial_loop(network: Network, seconds: float) -> float:
    """Network-epochs per second of the loop of Optuna's PyTorch example, full batch."""
    torch.set_num_threads(1)
    data = make_data(0)[0]
    widths, optimizer_name, lr = network
    model = build_mlp(widths, torch.Generator().manual_seed(0))
    optimizer = getattr(torch.optim, optimizer_name)(model.parameters(), lr=lr)
    loss_fn = nn.L1Loss()

    def epoch() -> None:
        optimizer.zero_grad()
        loss = loss_fn(model(data.x), data.y)
        loss.backward()
        optimizer.step()

    return epochs_per_second(epoch, seconds)


def epochs_per_second(step: Callable[[], object], seconds: float) -> float:
    for _ in range(20):  # warm up
        step()
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(20):
            step()
        n += 20
    return n / (time.perf_counter() - started)


def population_rate(
    networks: list[Network],
    threads: int,
    seconds: float,
    device: str = "cpu",
    compile_epoch: bool = False,
) -> float:
    """Network-epochs per second of ``networks`` trained as populations, one per stack."""
    torch.set_num_threads(threads)
    data = make_data(0)[0]
    stacks: dict[tuple[int, ...], list[Network]] = {}
    for network in networks:
        widths = network[0]
        if widths != TUTORIAL_WIDTHS:
            widths = padded_widths(NetworkConfig(*network))
        stacks.setdefault(widths, []).append(network)
    populations = []
    for widths, members in sorted(stacks.items()):
        population = Population(
            data,
            size=len(members),
            padded_widths=widths,
            report_every=10**9,
            device=torch.device(device),
        )
        for seed, (hidden, optimizer_name, lr) in enumerate(members):
            model = build_mlp(hidden, torch.Generator().manual_seed(seed))
            population.add(model, optimizer_name=optimizer_name, lr=lr, epochs=10**9)
        populations.append(population)

    steps = [population.epoch_step() for population in populations]
    if compile_epoch:
        steps = [torch.compile(step) for step in steps]

    def epoch() -> None:
        for step in steps:
            step()
        if device == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    rate = len(networks) * epochs_per_second(epoch, seconds)
    if compile_epoch:
        print(f"  (torch.compile: {time.perf_counter() - started:.1f} s including compilation)")
    return rate


def in_two_processes(function: Callable[..., float], *args: object) -> float:
    """Run ``function(*args)`` in two processes at once; the sum of their rates."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return sum(pool.starmap(function, [args, args]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short timings, K up to 32")
    parser.add_argument("--plot", type=Path, default=Path("docs/population_speed.png"))
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 3.0
    sizes = POPULATION_SIZES[:3] if args.quick else POPULATION_SIZES
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {seconds} s per figure")

    rows: dict[str, dict[str, list[float]]] = {}
    for workload, make in (("baseline", baseline_networks), ("mixed", mixed_networks)):
        sample = make(8)
        # One process per core: the eager figure is the mean over the 8 sampled networks.
        one_core = sum(one_trial_loop(n, seconds / 4) for n in sample) / len(sample)
        two_cores = sum(in_two_processes(one_trial_loop, n, seconds / 4) for n in sample) / 8
        print(
            f"\n{workload}: one-trial loop {one_core:8.0f} net-epochs/s on 1 core, "
            f"{two_cores:8.0f} on 2 cores (2 processes)"
        )
        print(f"{'K':>6} {'1 thread':>10} {'2 threads':>10} {'2 procs':>10} {'x 2-core loop':>14}")
        table: dict[str, list[float]] = {"1 thread": [], "2 threads": [], "2 processes": []}
        for size in sizes:
            networks = make(size)
            one = population_rate(networks, 1, seconds)
            two = population_rate(networks, 2, seconds)
            procs = in_two_processes(population_rate, networks, 1, seconds)
            for key, value in zip(table, (one, two, procs), strict=True):
                table[key].append(value)
            best = max(one, two, procs)
            print(f"{size:>6} {one:>10.0f} {two:>10.0f} {procs:>10.0f} {best / two_cores:>14.1f}")
        table["one-trial loop, 2 processes"] = [two_cores] * len(sizes)
        rows[workload] = table

    print("\ntorch.compile of the population epoch (mixed, K = 32, 1 thread):")
    eager_rate = population_rate(mixed_networks(32), 1, seconds)
    try:
        compiled_rate = population_rate(mixed_networks(32), 1, seconds, compile_epoch=True)
        print(f"  plain {eager_rate:.0f}, compiled {compiled_rate:.0f} net-epochs/s")
    except Exception as error:  # noqa: BLE001 - report whatever stopped the compiler
        print(f"  torch.compile failed: {type(error).__name__}: {str(error).splitlines()[0]}")

    if torch.cuda.is_available():
        print(f"\nCUDA ({torch.cuda.get_device_name()}), baseline network:")
        for size in CUDA_SIZES:
            rate = population_rate(baseline_networks(size), 1, seconds, device="cuda")
            print(f"{size:>6} {rate:>12.0f} net-epochs/s")

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, (workload, table) in zip(axes, rows.items(), strict=True):
        for label, values in table.items():
            style = "--" if label.startswith("one-trial") else "-o"
            axis.plot(sizes, values, style, label=label)
        axis.set(xscale="log", yscale="log", title=workload, xlabel="population size K")
    axes[0].set_ylabel("network-epochs per second")
    axes[1].legend()
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
