"""Run the hyperparameter search.

    python -m search.run --trials 100
    python -m search.run --trials 20 --jobs 2 --epochs 2000 --study quick
    python -m search.run --trials 100 --engine eager     # one trial at a time
    python -m search.run --storage postgresql+psycopg://host/db --study fleet --max-trials 500

Trials go to a SQLite study under studies/ by default; running again resumes the study. A new
study starts with the tutorial's network as trial 0, which counts as one of the trials. Any
number of these commands, on one machine or many, can share one study.
"""

import multiprocessing
import sys
import time
from collections.abc import Sequence

from ann.devices import resolve_device
from ann.seeds import derive_seed
from search import cli
from search.errors import UsageError
from search.fused import DEFAULT_POPULATION, ENGINE_CHOICES, choose_engine
from search.launcher import RunOutcome, run_workers, signal_name
from search.progress import SearchProgress
from search.report import report_study
from search.storage import Heartbeat, locate_storage
from search.study import (
    DEFAULT_EPOCHS,
    DEFAULT_REPORT_EVERY,
    PRUNER_CHOICES,
    SAMPLER_CHOICES,
    open_study_exclusively,
)
from search.summary import format_summary, summarize
from search.worker import TrialBudget, WorkerConfig, install_stop_handlers

DEFAULT_TRIALS = 100
DEFAULT_GRACE_PERIOD_S = 30


def parse_args(argv: Sequence[str] | None) -> cli.argparse.Namespace:
    parser = cli.make_parser("python -m search.run", __doc__)
    parser.add_argument(
        "--trials",
        type=cli.positive_int,
        default=None,
        help=f"trials this command adds ({DEFAULT_TRIALS}, or no limit with --max-trials)",
    )
    parser.add_argument(
        "--max-trials",
        type=cli.positive_int,
        default=None,
        help="study-wide budget: every worker stops once the study holds this many trials",
    )
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
    parser.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="eager trains one trial at a time, fused trains --population trials at once "
        "in one vectorized program; auto picks fused on cpu and cuda",
    )
    parser.add_argument(
        "--population",
        type=cli.positive_int,
        default=None,
        help=f"trials each worker trains at once with the fused engine ({DEFAULT_POPULATION}, "
        "or fewer if the worker's share of --trials is smaller)",
    )
    parser.add_argument("--jobs", type=cli.positive_int, default=1, help="worker processes")
    parser.add_argument(
        "--threads", type=cli.positive_int, default=1, help="torch threads in each worker"
    )
    parser.add_argument(
        "--grace-period",
        type=cli.at_least(2),
        default=DEFAULT_GRACE_PERIOD_S,
        help="seconds without a heartbeat after which a running trial counts as dead and reruns",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="skip the report figures and dashboard notes"
    )
    cli.add_json_argument(parser)
    args = parser.parse_args(argv)

    epochs = args.epochs or DEFAULT_EPOCHS
    if args.report_every is not None and args.report_every > epochs:
        parser.error(
            f"--report-every {args.report_every} is more than the {epochs} epochs per trial; "
            "pass a value from 1 to --epochs"
        )
    if args.trials is None and args.max_trials is None:
        args.trials = DEFAULT_TRIALS
    return args


def population_size(args: cli.argparse.Namespace) -> int:
    """Trials per population: ``--population``, else the default capped by the worker's share
    of the trials (a slot that no trial will fill is wasted)."""
    if args.population is not None:
        return args.population
    n_trials = args.trials or args.max_trials
    return max(1, min(DEFAULT_POPULATION, -(-n_trials // args.jobs)))


def report_outcome(outcome: RunOutcome) -> int:
    """Say on stderr how the run ended, and return the exit code."""
    if outcome.database_error is not None:
        print(
            f"error: the study database failed ({outcome.database_error}); "
            "finished trials are kept",
            file=sys.stderr,
        )
        return 1
    if outcome.stop_signal is not None:
        print(
            f"stopped by {signal_name(outcome.stop_signal)}: finished trials are kept, "
            "the running ones were marked failed",
            file=sys.stderr,
        )
        return 128 + outcome.stop_signal
    if outcome.crashed_workers:
        print(
            f"error: {outcome.crashed_workers} worker process(es) failed; see the errors above",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    engine = choose_engine(args.engine, device)
    if args.population is not None and engine == "eager":
        raise UsageError(
            f"--population applies to the fused engine, and this run uses the eager one on "
            f"{device}; drop --population or pass --engine fused"
        )
    location = locate_storage(args.storage, artifact_dir=args.artifact_dir)
    heartbeat = Heartbeat(
        interval_s=max(1, args.grace_period // 4), grace_period_s=args.grace_period
    )
    install_stop_handlers()

    storage, study, settings, created = open_study_exclusively(
        location,
        args.study,
        heartbeat=heartbeat,
        seed=args.seed,
        epochs=args.epochs,
        report_every=args.report_every,
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
            heartbeat=heartbeat,
            max_trials=args.max_trials,
            engine=engine,
            population=population_size(args) if engine == "fused" else 1,
        )
        for worker in range(args.jobs)
    ]
    deadline = time.time() + args.timeout if args.timeout else None
    budget = TrialBudget(args.trials, deadline, multiprocessing.get_context("spawn"))
    engine_text = f"fused engine, {configs[0].population} at once" if engine == "fused" else engine
    print(
        f"{'created' if created else 'resumed'} study {args.study!r}; running "
        f"{args.trials or 'up to --max-trials'} trials on {device} with {args.jobs} worker(s) "
        f"({engine_text})",
        file=sys.stderr,
        flush=True,
    )

    progress = SearchProgress(
        study,
        sys.stderr,
        n_trials=args.trials or args.max_trials,
        deadline=deadline,
        study_wide=args.trials is None,
    )
    outcome = run_workers(configs, budget, progress)
    progress.close()

    report = None
    finished_cleanly = outcome.stop_signal is None and outcome.database_error is None
    if finished_cleanly and not args.no_report:
        report = report_study(study, location)
    summary = summarize(
        study,
        location,
        stop_signal=outcome.stop_signal,
        report_dir=str(report.folder) if report else None,
    )
    print(format_summary(summary))
    if report is not None:
        print(f"Report: {report.describe()}")
    if args.json:
        cli.print_json(summary)
    storage.remove_session()
    storage.engine.dispose()
    return report_outcome(outcome)


if __name__ == "__main__":
    cli.run_main(main)
