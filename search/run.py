"""Run the hyperparameter search.

    python -m search.run --trials 100
    python -m search.run --trials 20 --jobs 2 --epochs 2000 --study quick

Trials go to a SQLite study under studies/ by default; running again resumes the study. A new
study starts with the tutorial's network as trial 0, which counts as one of --trials.
"""

import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ann.devices import resolve_device
from ann.seeds import derive_seed
from search import cli
from search.progress import SearchProgress
from search.storage import locate_storage, open_storage
from search.study import (
    DEFAULT_EPOCHS,
    DEFAULT_REPORT_EVERY,
    PRUNER_CHOICES,
    SAMPLER_CHOICES,
    open_study,
)
from search.summary import format_summary, summarize
from search.worker import TrialBudget, WorkerConfig, load_worker_study, run_trials, worker_process


def parse_args(argv: Sequence[str] | None) -> cli.argparse.Namespace:
    parser = cli.make_parser("python -m search.run", __doc__)
    parser.add_argument("--trials", type=cli.positive_int, default=100, help="trials to add")
    parser.add_argument(
        "--timeout",
        type=cli.positive_float,
        default=None,
        help="seconds after which no trial starts",
    )
    parser.add_argument(
        "--epochs",
        type=cli.positive_int,
        default=None,
        help=f"epochs per trial (default: the study's, {DEFAULT_EPOCHS} for a new one)",
    )
    parser.add_argument(
        "--report-every",
        type=cli.positive_int,
        default=None,
        help=f"epochs between validation reports (default: the study's, {DEFAULT_REPORT_EVERY})",
    )
    parser.add_argument(
        "--seed",
        type=cli.non_negative_int,
        default=None,
        help="data and trial seeds, and the sampler's (default: the study's, 0 for a new one)",
    )
    cli.add_study_arguments(parser)
    cli.add_device_argument(parser)
    parser.add_argument("--pruner", choices=PRUNER_CHOICES, default="median", help="pruner")
    parser.add_argument("--sampler", choices=SAMPLER_CHOICES, default="tpe", help="sampler")
    parser.add_argument("--jobs", type=cli.positive_int, default=1, help="worker processes")
    parser.add_argument(
        "--threads", type=cli.positive_int, default=1, help="torch threads in each worker"
    )
    cli.add_json_argument(parser)
    args = parser.parse_args(argv)

    epochs = args.epochs or DEFAULT_EPOCHS
    if args.report_every is not None and args.report_every > epochs:
        parser.error(
            f"--report-every {args.report_every} is more than the {epochs} epochs per trial; "
            "pass a value from 1 to --epochs"
        )
    return args


@dataclass
class RunOutcome:
    interrupted: bool = False
    failed_workers: int = 0


def run_in_processes(
    configs: list[WorkerConfig], budget: TrialBudget, progress: SearchProgress, context
) -> RunOutcome:
    """Start one worker process per config and follow the study until all of them end."""
    processes = [
        context.Process(target=worker_process, args=(config, budget)) for config in configs
    ]
    for process in processes:
        process.start()

    outcome = RunOutcome()
    try:
        while any(process.is_alive() for process in processes):
            progress.update()
            time.sleep(0.5)
    except KeyboardInterrupt:
        outcome.interrupted = True
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join()

    outcome.interrupted |= any(process.exitcode == cli.EXIT_INTERRUPTED for process in processes)
    outcome.failed_workers = sum(
        process.exitcode not in (0, cli.EXIT_INTERRUPTED) for process in processes
    )
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    location = locate_storage(args.storage, artifact_dir=args.artifact_dir)

    storage = open_storage(location)
    study, settings, created = open_study(
        storage, args.study, seed=args.seed, epochs=args.epochs, report_every=args.report_every
    )
    n_existing = len(study.get_trials(deepcopy=False))
    configs = [
        WorkerConfig(
            location=location,
            study_name=args.study,
            settings=settings,
            device=str(device),
            sampler=args.sampler,
            sampler_seed=derive_seed(settings.seed, "sampler", n_existing, worker),
            pruner=args.pruner,
            threads=args.threads,
        )
        for worker in range(args.jobs)
    ]

    context = multiprocessing.get_context("spawn")
    deadline = time.time() + args.timeout if args.timeout else None
    budget = TrialBudget(args.trials, deadline, context)
    verb = "created" if created else "resumed"
    print(
        f"{verb} study {args.study!r}; running {args.trials} trials on {device} "
        f"with {args.jobs} worker(s)",
        file=sys.stderr,
        flush=True,
    )
    progress = SearchProgress(study, sys.stderr, n_trials=args.trials, deadline=deadline)

    if args.jobs == 1:
        outcome = RunOutcome()
        worker_study, objective = load_worker_study(configs[0])
        try:
            run_trials(worker_study, objective, budget, on_trial_finished=progress.update)
        except KeyboardInterrupt:
            outcome.interrupted = True
    else:
        outcome = run_in_processes(configs, budget, progress, context)
    progress.close()

    summary = summarize(study, location, interrupted=outcome.interrupted)
    print(format_summary(summary))
    if args.json:
        cli.print_json(summary)

    if outcome.interrupted:
        print(
            "interrupted: finished trials are kept, the running ones were marked failed",
            file=sys.stderr,
        )
        return cli.EXIT_INTERRUPTED
    if outcome.failed_workers:
        print(
            f"error: {outcome.failed_workers} worker process(es) crashed; see the errors above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    cli.run_main(main)
