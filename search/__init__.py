"""Optuna hyperparameter search over the ReLU MLPs of ``ann``.

Entry points: ``python -m search.run`` (the search), ``python -m search.baseline`` (the
tutorial program) and ``python -m search.reproduce`` (retrain a stored trial).
"""
