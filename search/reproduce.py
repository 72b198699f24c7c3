"""Retrain a stored trial from its parameters and seed, and compare with the stored result.

    python -m search.reproduce --trial 0          # the baseline
    python -m search.reproduce --trial 42 --study ann --json

A completed trial is retrained for the study's epochs and compared on its final validation L1;
a pruned one is retrained up to the epoch it was pruned at and compared on its last report.
It retrains with the engine that trained it (the fused one in the stack it trained in), and on
the CPU both agree to float precision; exit code 1 says they did not. With the other engine
(``--engine eager`` or ``fused``) the two runs round differently from the first epoch, and
under L1 loss such differences grow with the epochs (by several percent over thousands of
epochs), so the command prints the relative difference and checks nothing.
"""

import math
from collections.abc import Sequence
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from ann.data import make_data
from ann.devices import resolve_device
from search import cli
from search.errors import UsageError
from search.fused import PADDED_WIDTHS_ATTR, train_alone_in_population
from search.objective import ENGINE_ATTR, save_trial_files, train_network
from search.space import NetworkConfig
from search.storage import locate_storage, open_storage
from search.study import stored_settings, study_exists

CPU_TOLERANCE = 1e-5
"""Relative tolerance when the trial and its reproduction both ran on the CPU."""
DEVICE_TOLERANCE = 1e-3
"""Relative tolerance across devices: GPU kernels sum in a different order than the CPU."""


def stored_result(trial: optuna.trial.FrozenTrial) -> tuple[float, int]:
    """The validation L1 to compare against and the epochs needed to reach it."""
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        return trial.value, int(trial.user_attrs["epochs_run"])
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        epoch = max(trial.intermediate_values)
        return trial.intermediate_values[epoch], epoch
    raise UsageError(
        f"trial {trial.number} is {trial.state.name} and has no stored validation L1 to "
        "reproduce; pick a COMPLETE or PRUNED trial"
    )


def load_trial(
    storage: optuna.storages.BaseStorage, study_name: str, number: int
) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """Find trial ``number`` of study ``study_name``, or say what exists instead."""
    if not study_exists(storage, study_name):
        names = ", ".join(sorted(optuna.get_all_study_names(storage))) or "none"
        raise UsageError(f"no study named {study_name!r} in this storage (studies: {names})")

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise UsageError(
            f"study {study_name!r} has no trial {number}; "
            f"trials are numbered 0 to {len(trials) - 1}"
        )
    return study, trials[number]


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.make_parser("python -m search.reproduce", __doc__)
    parser.add_argument("--trial", type=cli.non_negative_int, required=True, help="trial number")
    cli.add_study_arguments(parser)
    cli.add_device_argument(parser)
    parser.add_argument(
        "--out", type=Path, default=None, help="figures go here (default: studies/reproduced/...)"
    )
    parser.add_argument("--threads", type=cli.positive_int, default=1, help="torch threads")
    parser.add_argument(
        "--engine",
        choices=("stored", "eager", "fused"),
        default="stored",
        help="engine to retrain with (stored: the one that trained the trial)",
    )
    cli.add_json_argument(parser)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    location = locate_storage(args.storage, artifact_dir=args.artifact_dir, must_exist=True)
    torch.set_num_threads(args.threads)

    study, trial = load_trial(open_storage(location), args.study, args.trial)
    settings = stored_settings(study)
    stored_val_l1, epochs = stored_result(trial)
    config = NetworkConfig.from_params(trial.params)

    data = make_data(settings.seed)[0]
    stored_engine = trial.user_attrs.get(ENGINE_ATTR, "eager")
    engine = stored_engine if args.engine == "stored" else args.engine
    init_seed = trial.user_attrs["seed"]
    if engine == "fused":
        stack = trial.user_attrs.get(PADDED_WIDTHS_ATTR)
        model, result = train_alone_in_population(
            config,
            data,
            init_seed=init_seed,
            settings=settings,
            device=device,
            epochs=epochs,
            stack_widths=tuple(stack) if stack else None,
        )
    else:
        model, result = train_network(
            config, data, init_seed=init_seed, settings=settings, device=device, epochs=epochs
        )
    out = args.out or Path("studies") / "reproduced" / args.study / f"trial-{args.trial}"
    figures = save_trial_files(model, result, data, out, f"trial {args.trial} reproduced")
    both_cpu = device.type == "cpu" and trial.user_attrs.get("device") == "cpu"
    tolerance = CPU_TOLERANCE if both_cpu else DEVICE_TOLERANCE
    relative_difference = abs(result.val_l1 - stored_val_l1) / abs(stored_val_l1)
    # Across engines there is nothing to check (see the module docstring).
    match = math.isclose(result.val_l1, stored_val_l1, rel_tol=tolerance)
    checked = engine == stored_engine

    print(f"trial {args.trial} of study {args.study!r}: {config.describe()}, {epochs} epochs")
    stored_on = f"{stored_engine} engine on {trial.user_attrs.get('device')}"
    print(f"stored validation L1      {stored_val_l1:.6f} ({stored_on})")
    print(f"reproduced validation L1  {result.val_l1:.6f} ({engine} engine on {device})")
    print(
        f"match                     {'yes' if match else 'NO'} (relative tolerance {tolerance:g})"
        if checked
        else f"difference                {relative_difference:.2%} (other engine: not checked)"
    )
    print(f"figures                   {', '.join(str(path) for path in figures)}")
    if args.json:
        cli.print_json(
            {
                "study": args.study,
                "trial": args.trial,
                "state": trial.state.name,
                "epochs": epochs,
                "stored_val_l1": stored_val_l1,
                "reproduced_val_l1": result.val_l1,
                "reproduced_final_train_l1": result.final_train_l1,
                "match": match if checked else None,
                "relative_tolerance": tolerance if checked else None,
                "relative_difference": relative_difference,
                "device": str(device),
                "engine": engine,
                "stored_engine": stored_engine,
                "files": [str(path) for path in figures],
            }
        )
    return 0 if match or not checked else 1


if __name__ == "__main__":
    cli.run_main(main)
