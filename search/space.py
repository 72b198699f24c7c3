"""The search space: every ``suggest_*`` call lives in :func:`suggest_params`.

Parameter names are part of the interface (stored studies and ``search.reproduce`` depend on
them): ``n_layers``, ``n_units_l0`` ... ``n_units_l3``, ``lr`` and ``optimizer``.
"""

from dataclasses import dataclass
from typing import Any

import optuna

from ann.model import TUTORIAL_WIDTHS
from ann.training import OPTIMIZERS

MAX_LAYERS = 4
UNITS_RANGE = (2, 32)
LR_RANGE = (1e-4, 1e-1)
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
STACK_WIDTH_STEP = 16

BASELINE_PARAMS: dict[str, Any] = {
    "n_layers": len(TUTORIAL_WIDTHS),
    **{f"n_units_l{i}": width for i, width in enumerate(TUTORIAL_WIDTHS)},
    "lr": 0.002,
    "optimizer": "SGD",
}
"""The tutorial's network (1-6-10-6-1, SGD with lr 0.002) as a point of the search space."""


@dataclass(frozen=True)
class NetworkConfig:
    """What a trial trains: hidden widths, optimizer and learning rate."""

    hidden_widths: tuple[int, ...]
    optimizer: str
    lr: float

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "NetworkConfig":
        """Rebuild the configuration from a trial's parameters alone."""
        n_layers = int(params["n_layers"])
        widths = tuple(int(params[f"n_units_l{i}"]) for i in range(n_layers))
        return cls(
            hidden_widths=widths, optimizer=str(params["optimizer"]), lr=float(params["lr"])
        )

    def describe(self) -> str:
        """A short label such as ``6-10-6 SGD lr=0.002``."""
        widths = "-".join(str(width) for width in self.hidden_widths)
        return f"{widths} {self.optimizer} lr={self.lr:.3g}"


def suggest_params(trial: optuna.Trial) -> NetworkConfig:
    """Sample one network from the search space (or take an enqueued trial's fixed values)."""
    n_layers = trial.suggest_int("n_layers", 1, MAX_LAYERS)
    for i in range(n_layers):
        trial.suggest_int(f"n_units_l{i}", *UNITS_RANGE)
    trial.suggest_float("lr", *LR_RANGE, log=True)
    trial.suggest_categorical("optimizer", OPTIMIZER_NAMES)
    return NetworkConfig.from_params(trial.params)


def padded_widths(config: NetworkConfig) -> tuple[int, ...]:
    """The stack the fused engine trains ``config`` in: its own depth, each layer's width
    rounded up to a multiple of :data:`STACK_WIDTH_STEP`.

    The stack depends on the network alone, so a stored trial names its stack and retrains
    in it to the last bit (a member's numbers depend on the stack's widths, not on the other
    members). Rounding to 16 lets similar networks share a stack, while sparing narrow ones
    most of the cost of the widest: on a population of 32 networks from this space it ran
    about twice as fast as one 32-wide stack per depth (benchmarks/population_speed.py).
    """
    return tuple(
        -(-width // STACK_WIDTH_STEP) * STACK_WIDTH_STEP for width in config.hidden_widths
    )
