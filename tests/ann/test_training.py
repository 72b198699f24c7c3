"""Full-batch training: reports, early stop, divergence, optimizers."""

import pytest
import torch

from ann.data import make_data
from ann.model import build_mlp
from ann.training import NonFiniteLossError, Report, make_optimizer, train

CPU = torch.device("cpu")


def small_run(**overrides):
    data, generator = make_data(0, n_points=200)
    model = build_mlp([8, 8], generator)
    options = dict(optimizer_name="Adam", lr=0.01, epochs=100, report_every=25, device=CPU)
    options.update(overrides)
    return train(model, data, **options)


def test_adam_lowers_the_training_loss():
    result = small_run(epochs=300)

    assert result.loss_curve[-1] < 0.5 * result.loss_curve[0]
    assert result.epochs_run == 300 and len(result.loss_curve) == 300
    assert result.final_train_l1 == result.loss_curve[-1]


def test_reports_come_every_report_every_epochs_and_at_the_last_epoch():
    reports: list[Report] = []

    result = small_run(epochs=110, report_every=25, on_report=lambda r: reports.append(r) or False)

    assert [r.epoch for r in reports] == [25, 50, 75, 100, 110]
    assert reports[-1].val_l1 == result.val_l1
    assert [r.train_l1 for r in reports] == [
        result.loss_curve[e - 1] for e in (25, 50, 75, 100, 110)
    ]


def test_callback_returning_true_stops_after_that_epoch():
    result = small_run(epochs=100, report_every=10, on_report=lambda r: r.epoch >= 30)

    assert result.stopped_early
    assert result.epochs_run == 30


def test_stop_asked_at_the_last_epoch_is_not_an_early_stop():
    result = small_run(epochs=10, report_every=10, on_report=lambda r: True)

    assert not result.stopped_early
    assert result.epochs_run == 10


def test_diverging_training_raises_with_the_epoch():
    with pytest.raises(NonFiniteLossError) as raised:
        small_run(optimizer_name="SGD", lr=1e30, epochs=100, report_every=10)

    assert raised.value.epoch == 10


def test_training_is_deterministic_on_cpu():
    assert small_run().loss_curve == small_run().loss_curve


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_known_optimizers_are_built(name):
    optimizer = make_optimizer(name, [torch.nn.Parameter(torch.zeros(1))], 0.1)

    assert type(optimizer).__name__ == name


def test_unknown_optimizer_and_bad_learning_rate_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("RMSprop", [torch.nn.Parameter(torch.zeros(1))], 0.1)
    with pytest.raises(ValueError, match="positive"):
        make_optimizer("SGD", [torch.nn.Parameter(torch.zeros(1))], 0.0)


@pytest.mark.parametrize("epochs, report_every", [(0, 1), (10, 0)])
def test_bad_budgets_are_refused(epochs, report_every):
    with pytest.raises(ValueError):
        small_run(epochs=epochs, report_every=report_every)
