"""Pure PyTorch core: the quadratic-noise data set, ReLU MLPs, full-batch training and plots.

Nothing in this package imports Optuna; ``search`` builds the hyperparameter search on top.
"""
