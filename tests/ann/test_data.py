"""The data set: tutorial draws, an independent validation set, the noise floor."""

import torch
from torch.nn import init

from ann.data import N_POINTS, X_HIGH, X_LOW, make_data, true_function


def test_training_points_equal_the_tutorials_draws_after_manual_seed():
    torch.manual_seed(7)
    x = init.uniform_(torch.Tensor(1000, 1), -15, 15)
    noise = init.normal_(torch.FloatTensor(1000, 1), std=1)
    y_noise = x**2 + 3 + noise

    data, _ = make_data(7)

    assert torch.equal(data.x, x)
    assert torch.equal(data.y, y_noise)


def test_generator_continues_where_the_tutorial_builds_its_model():
    torch.manual_seed(3)
    torch.Tensor(1000, 1).uniform_(-15, 15)
    torch.Tensor(1000, 1).normal_()
    expected_next = torch.rand(5)

    _, generator = make_data(3)

    assert torch.equal(torch.rand(5, generator=generator), expected_next)


def test_shapes_and_range():
    data, _ = make_data(0)

    for tensor in (data.x, data.y, data.x_val, data.y_val, data.y_val_clean):
        assert tensor.shape == (N_POINTS, 1)
    assert data.x.min() >= X_LOW and data.x.max() <= X_HIGH
    assert data.x_val.min() >= X_LOW and data.x_val.max() <= X_HIGH


def test_validation_set_is_independent_of_training_set_but_fixed_by_the_seed():
    data, _ = make_data(0)
    again, _ = make_data(0)
    other, _ = make_data(1)

    assert not torch.equal(data.x, data.x_val)
    assert torch.equal(data.x_val, again.x_val)
    assert not torch.equal(data.x_val, other.x_val)
    assert torch.equal(data.y_val_clean, true_function(data.x_val))


def test_noise_floor_is_the_mean_absolute_standard_normal():
    data, _ = make_data(0)

    # E|N(0, 1)| = sqrt(2 / pi) ~ 0.798; 1000 points put the mean within a few hundredths.
    assert abs(data.noise_floor_l1 - (2 / torch.pi) ** 0.5) < 0.06
