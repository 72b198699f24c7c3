"""search.baseline reproduces the tutorial program, checked against a copy of its steps."""

import json

import torch
from torch import nn, optim
from torch.nn import init

from tests.conftest import run_module


def tutorial_last_loss(seed: int, epochs: int) -> float:
    """The tutorial's program, step for step, after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    x = init.uniform_(torch.Tensor(1000, 1), -15, 15)
    noise = init.normal_(torch.FloatTensor(1000, 1), std=1)
    y_noise = x**2 + 3 + noise
    model = nn.Sequential(
        nn.Linear(1, 6),
        nn.ReLU(),
        nn.Linear(6, 10),
        nn.ReLU(),
        nn.Linear(10, 6),
        nn.ReLU(),
        nn.Linear(6, 1),
    )
    loss_func = nn.L1Loss()
    optimizer = optim.SGD(model.parameters(), lr=0.002)
    loss_list = []
    for _ in range(epochs):
        optimizer.zero_grad()
        output = model(x)
        loss = loss_func(output, y_noise)
        loss.backward()
        optimizer.step()
        loss_list.append(loss)
    return loss_list[-1].item()


def test_final_train_loss_equals_the_tutorials_last_loss(workdir):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = tutorial_last_loss(seed=3, epochs=400)
    finally:
        torch.set_num_threads(threads)

    completed = run_module(
        "search.baseline", "--seed", "3", "--epochs", "400", "--json", cwd=workdir
    )

    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.splitlines()[-1])
    assert result["final_train_l1"] == expected
    assert result["epochs"] == 400
    assert result["val_l1"] > result["noise_floor_l1"] > 0
    assert result["seconds"] > 0
    assert "final train L1" in completed.stdout and "noise floor" in completed.stdout


def test_baseline_writes_both_figures(workdir):
    completed = run_module("search.baseline", "--epochs", "50", "--out", "figs", cwd=workdir)

    assert completed.returncode == 0, completed.stderr
    assert (workdir / "figs" / "fit.png").stat().st_size > 0
    assert (workdir / "figs" / "loss_curve.png").stat().st_size > 0
