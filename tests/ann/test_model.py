"""Building ReLU MLPs from hidden widths with PyTorch's default initialization."""

import pytest
import torch
from torch import nn

from ann.model import build_mlp, hidden_widths_of


def test_layers_are_linear_and_relu_from_one_input_to_one_output():
    model = build_mlp([6, 10, 6], torch.Generator().manual_seed(0))

    kinds = [type(layer) for layer in model]
    assert kinds == [nn.Linear, nn.ReLU] * 3 + [nn.Linear]
    assert model[0].in_features == 1 and model[-1].out_features == 1
    assert hidden_widths_of(model) == [6, 10, 6]


def test_initial_weights_equal_a_model_built_after_manual_seed():
    torch.manual_seed(11)
    expected = nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1))

    model = build_mlp([4], torch.Generator().manual_seed(11))

    for ours, theirs in zip(
        model.state_dict().values(), expected.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs)


def test_global_generator_is_left_alone_and_the_given_one_advances():
    torch.manual_seed(5)
    global_state_before = torch.get_rng_state()
    generator = torch.Generator().manual_seed(5)
    state_before = generator.get_state()

    build_mlp([8, 8], generator)

    assert torch.equal(torch.get_rng_state(), global_state_before)
    assert not torch.equal(generator.get_state(), state_before)


def test_two_builds_from_equal_generators_are_identical():
    first = build_mlp([3, 5], torch.Generator().manual_seed(2))
    second = build_mlp([3, 5], torch.Generator().manual_seed(2))

    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("widths", [[], [0], [4, -1]])
def test_bad_widths_are_refused(widths):
    with pytest.raises(ValueError):
        build_mlp(widths, torch.Generator())
