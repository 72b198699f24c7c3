"""Reproduce the tutorial program exactly: its data, its 1-6-10-6-1 network, SGD, 10,000 epochs.

    python -m search.baseline
    python -m search.baseline --seed 1 --epochs 2000 --json

With seed S, the data and the initial weights are drawn as the tutorial draws them after
``torch.manual_seed(S)``, so the final training L1 equals the tutorial's last loss on the CPU.
"""

import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from ann.data import make_data
from ann.devices import resolve_device
from ann.model import TUTORIAL_WIDTHS, build_mlp
from ann.training import train
from search import cli
from search.objective import save_trial_files
from search.space import BASELINE_PARAMS
from search.study import DEFAULT_EPOCHS, DEFAULT_REPORT_EVERY, DEFAULT_SEED


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.make_parser("python -m search.baseline", __doc__)
    parser.add_argument("--seed", type=cli.non_negative_int, default=DEFAULT_SEED, help="seed")
    parser.add_argument("--epochs", type=cli.positive_int, default=DEFAULT_EPOCHS, help="epochs")
    cli.add_device_argument(parser)
    parser.add_argument(
        "--out", type=Path, default=Path("studies/baseline"), help="figures go here"
    )
    parser.add_argument("--threads", type=cli.positive_int, default=1, help="torch threads")
    cli.add_json_argument(parser)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)

    data, generator = make_data(args.seed)
    model = build_mlp(TUTORIAL_WIDTHS, generator)
    result = train(
        model,
        data,
        optimizer_name=BASELINE_PARAMS["optimizer"],
        lr=BASELINE_PARAMS["lr"],
        epochs=args.epochs,
        report_every=min(DEFAULT_REPORT_EVERY, args.epochs),
        device=device,
    )
    figures = save_trial_files(model, result, data, args.out, "tutorial baseline")
    seconds = result.seconds

    print(f"tutorial baseline, seed {args.seed}, {result.epochs_run} epochs on {device}")
    print(f"final train L1    {result.final_train_l1:.6f}")
    print(f"validation L1     {result.val_l1:.6f}")
    print(f"noise floor L1    {data.noise_floor_l1:.6f}")
    print(f"seconds           {seconds:.1f} (training)")
    print(f"figures           {', '.join(str(path) for path in figures)}")
    if args.json:
        cli.print_json(
            {
                "seed": args.seed,
                "epochs": result.epochs_run,
                "device": str(device),
                "final_train_l1": result.final_train_l1,
                "val_l1": result.val_l1,
                "noise_floor_l1": data.noise_floor_l1,
                "seconds": seconds,
                "files": [str(path) for path in figures],
            }
        )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    cli.run_main(main)
