"""The tutorial's data set: y = x^2 + 3 plus N(0, 1) noise, x uniform on [-15, 15].

The training points are drawn exactly as the tutorial draws them (x first, then the noise, from
one generator), so that with a generator seeded like ``torch.manual_seed(seed)`` they equal the
tutorial's data. A validation set of the same size and distribution comes from an independent
generator derived from the seed, and its clean targets give the noise floor: the L1 loss that
the true function itself scores on the validation set.
"""

from dataclasses import dataclass

import torch

from ann.seeds import derive_seed

N_POINTS = 1000
X_LOW, X_HIGH = -15.0, 15.0
NOISE_STD = 1.0


def true_function(x: torch.Tensor) -> torch.Tensor:
    """The function the network should learn: x^2 + 3."""
    return x**2 + 3


@dataclass(frozen=True)
class QuadraticData:
    """Training and validation tensors, each of shape ``[n_points, 1]``, on one device."""

    x: torch.Tensor
    y: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    y_val_clean: torch.Tensor

    @property
    def noise_floor_l1(self) -> float:
        """Validation L1 of the true function: no model can expect to score below it."""
        return torch.mean(torch.abs(self.y_val - self.y_val_clean)).item()

    def to(self, device: torch.device | str) -> "QuadraticData":
        """Return a copy with every tensor on ``device``."""
        return QuadraticData(
            x=self.x.to(device),
            y=self.y.to(device),
            x_val=self.x_val.to(device),
            y_val=self.y_val.to(device),
            y_val_clean=self.y_val_clean.to(device),
        )


def draw_points(
    generator: torch.Generator, n_points: int = N_POINTS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``(x, noisy y, clean y)`` in the tutorial's order: all of x, then all of the noise."""
    x = torch.empty(n_points, 1).uniform_(X_LOW, X_HIGH, generator=generator)
    noise = torch.empty(n_points, 1).normal_(0.0, NOISE_STD, generator=generator)
    clean = true_function(x)
    return x, clean + noise, clean


def make_data(seed: int, n_points: int = N_POINTS) -> tuple[QuadraticData, torch.Generator]:
    """Build the data set for ``seed``.

    Returns the data (on the CPU) and the training generator, left just after the training
    draws: the tutorial initializes its model from that same stream.
    """
    if n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points}")

    generator = torch.Generator().manual_seed(seed)
    x, y, _ = draw_points(generator, n_points)

    validation_generator = torch.Generator().manual_seed(derive_seed(seed, "validation"))
    x_val, y_val, y_val_clean = draw_points(validation_generator, n_points)

    data = QuadraticData(x=x, y=y, x_val=x_val, y_val=y_val, y_val_clean=y_val_clean)
    return data, generator
