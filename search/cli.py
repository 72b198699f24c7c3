"""What the entry points share: argument types, common options, logging and error handling."""

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import optuna

from ann.devices import DEVICE_CHOICES, DeviceUnavailableError
from search.errors import UsageError
from search.storage import DEFAULT_STORAGE, DEFAULT_STUDY

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line: what is wrong, and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def make_parser(prog: str, description: str | None) -> ArgumentParser:
    """A parser that shows each option's default in its help text."""
    return ArgumentParser(
        prog=prog,
        description=(description or "").strip().split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer of at least ``minimum``."""
    wording = {0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer of at least {minimum}"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {wording}, got {text!r}")
        return value

    return parse


positive_int = at_least(1)
non_negative_int = at_least(0)


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """``--study`` and ``--storage``, named as Optuna names them."""
    parser.add_argument("--study", default=DEFAULT_STUDY, help="study name")
    parser.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="any database URL Optuna's RDB storage takes"
    )
    parser.add_argument(
        "--artifact-dir",
        type=Path,
        default=None,
        help="artifact store (default: artifacts/ beside a SQLite file, else studies/artifacts)",
    )


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``; auto picks CUDA, then MPS, then the CPU."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="torch device")


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json``: the last line of stdout is one JSON object."""
    parser.add_argument(
        "--json", action="store_true", help="end stdout with one JSON object for programs"
    )


def print_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one line of JSON on stdout."""
    print(json.dumps(payload, sort_keys=True), flush=True)


def configure_logging() -> None:
    """Warnings and errors only, so Optuna's per-trial lines do not flood the terminal."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def invoke(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Call an entry point's ``main`` and return its exit code.

    Known errors become one line on stderr and exit code 2; argparse's own exits pass through.
    """
    try:
        return main(argv)
    except (UsageError, DeviceUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_request:
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_USAGE


def run_main(main: Callable[[Sequence[str] | None], int]) -> NoReturn:
    """What ``python -m search.X`` runs: quiet logging, then :func:`invoke` on sys.argv."""
    configure_logging()
    sys.exit(invoke(main, None))
