"""The search space: stable names, the baseline inside it, rebuilding from parameters."""

import optuna

from search.space import BASELINE_PARAMS, NetworkConfig, suggest_params


def test_baseline_lies_inside_the_search_space():
    study = optuna.create_study()
    study.enqueue_trial(BASELINE_PARAMS)

    trial = study.ask()
    config = suggest_params(trial)

    assert trial.params == BASELINE_PARAMS
    for name, value in trial.params.items():
        assert trial.distributions[name]._contains(
            trial.distributions[name].to_internal_repr(value)
        )
    assert config == NetworkConfig(hidden_widths=(6, 10, 6), optimizer="SGD", lr=0.002)


def test_sampled_parameters_use_the_documented_names_and_ranges():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    for _ in range(30):
        trial = study.ask()
        config = suggest_params(trial)
        n_layers = trial.params["n_layers"]
        expected = {"n_layers", "lr", "optimizer"} | {f"n_units_l{i}" for i in range(n_layers)}
        assert set(trial.params) == expected
        assert 1 <= n_layers <= 4
        assert all(2 <= width <= 32 for width in config.hidden_widths)
        assert 1e-4 <= config.lr <= 1e-1
        assert config.optimizer in ("SGD", "Adam")
        study.tell(trial, 1.0)


def test_config_is_rebuilt_from_parameters_alone():
    params = {"n_layers": 2, "n_units_l0": 3, "n_units_l1": 9, "lr": 0.01, "optimizer": "Adam"}

    config = NetworkConfig.from_params(params)

    assert config.hidden_widths == (3, 9)
    assert config.describe() == "3-9 Adam lr=0.01"
