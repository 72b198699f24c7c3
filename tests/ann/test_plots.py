"""The two tutorial figures are written as PNG files."""

from ann.data import make_data
from ann.model import build_mlp
from ann.plots import save_fit, save_loss_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_loss_curve_and_fit_are_png_files(tmp_path):
    data, generator = make_data(0, n_points=50)
    model = build_mlp([4], generator)

    paths = [
        save_loss_curve([3.0, 2.0, 1.5], tmp_path / "nested" / "loss.png", noise_floor_l1=0.8),
        save_fit(model, data, tmp_path / "fit.png"),
    ]

    for path in paths:
        content = path.read_bytes()
        assert content.startswith(PNG_SIGNATURE)
        assert len(content) > 5_000
