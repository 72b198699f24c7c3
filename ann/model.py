"""ReLU MLPs 1 -> w1 -> ... -> wk -> 1 as ``nn.Sequential`` of ``Linear`` and ``ReLU``."""

from collections.abc import Sequence

import torch
from torch import nn

TUTORIAL_WIDTHS = (6, 10, 6)


def build_mlp(hidden_widths: Sequence[int], generator: torch.Generator) -> nn.Sequential:
    """Build the MLP with PyTorch's default initialization, drawn from ``generator``.

    ``nn.Linear`` draws its initial weights from torch's global generator. To keep the global
    state untouched and still match a program that calls ``torch.manual_seed`` and then builds
    the model, the global generator is swapped for ``generator``'s state during construction,
    and ``generator`` is advanced by exactly the draws the construction made.
    """
    if not hidden_widths:
        raise ValueError("hidden_widths must name at least one hidden layer")
    if any(width < 1 for width in hidden_widths):
        raise ValueError(
            f"every hidden width must be a positive integer, got {list(hidden_widths)}"
        )

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.set_state(generator.get_state())
        layers: list[nn.Module] = []
        fan_in = 1
        for width in hidden_widths:
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        layers.append(nn.Linear(fan_in, 1))
        model = nn.Sequential(*layers)
        generator.set_state(torch.default_generator.get_state())

    return model


def hidden_widths_of(model: nn.Sequential) -> list[int]:
    """The hidden widths of a model made by :func:`build_mlp`."""
    linears = [layer for layer in model if isinstance(layer, nn.Linear)]
    return [layer.out_features for layer in linears[:-1]]
