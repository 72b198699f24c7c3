"""The tutorial's two figures, written as PNG files with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``, so that no
window backend is touched and nothing global is left behind between calls.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from ann.data import QuadraticData


def _new_figure() -> Figure:
    # Fixed margins: matplotlib's constrained layout took half of each figure's time, which
    # adds up when every completed trial draws two.
    figure = Figure(figsize=(6, 4))
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.13, top=0.91)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)
    return path


def save_loss_curve(
    loss_curve: Sequence[float],
    path: Path,
    *,
    noise_floor_l1: float | None = None,
    title: str = "Training loss",
) -> Path:
    """Plot the training L1 of every epoch (log scale), with the noise floor if given."""
    figure = _new_figure()
    axes = figure.add_subplot()
    axes.plot(range(1, len(loss_curve) + 1), loss_curve, label="train L1")
    if noise_floor_l1 is not None:
        axes.axhline(
            noise_floor_l1, color="gray", linestyle="--", label="noise floor (validation)"
        )
    axes.set(xlabel="epoch", ylabel="L1 loss", yscale="log", title=title)
    axes.legend()
    return _save(figure, path)


def save_fit(model: nn.Module, data: QuadraticData, path: Path, *, title: str = "Fit") -> Path:
    """Scatter the noisy training data with the model's output at the same x."""
    parameter = next(model.parameters())
    with torch.no_grad():
        prediction = model(data.x.to(parameter.device)).cpu()

    figure = _new_figure()
    axes = figure.add_subplot()
    axes.scatter(data.x.cpu(), data.y.cpu(), s=4, alpha=0.4, label="data")
    axes.scatter(data.x.cpu(), prediction, s=4, color="tab:red", label="model")
    axes.set(xlabel="x", ylabel="y", title=title)
    axes.legend()
    return _save(figure, path)
