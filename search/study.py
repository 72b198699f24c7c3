"""Creating and resuming studies: fixed training settings, the baseline trial, sampler, pruner.

A study's training settings (data seed, epochs, report interval) are stored in the study's
user attributes when it is created, so that every trial in it trains on the same data for the
same budget and can be reproduced later from the study alone.
"""

import logging
from dataclasses import asdict, dataclass

import optuna

from ann.seeds import derive_seed
from search.errors import UsageError
from search.locks import StudyLock
from search.space import BASELINE_PARAMS
from search.storage import Heartbeat, StorageLocation, open_storage

logger = logging.getLogger(__name__)

DEFAULT_SEED = 0
DEFAULT_EPOCHS = 10_000
DEFAULT_REPORT_EVERY = 100
SETTINGS_ATTR = "settings"
BASELINE_ATTR = "baseline"
PRUNER_CHOICES = ("median", "hyperband", "none")
MEDIAN_STARTUP_TRIALS = 5
"""Completed trials the median pruner waits for before it prunes anything."""
SAMPLER_CHOICES = ("tpe", "random")


@dataclass(frozen=True)
class StudySettings:
    """What every trial of a study shares: the data seed and the training budget."""

    seed: int = DEFAULT_SEED
    epochs: int = DEFAULT_EPOCHS
    report_every: int = DEFAULT_REPORT_EVERY

    def trial_seed(self, trial_number: int) -> int:
        """The seed that initializes trial ``trial_number``'s network."""
        return derive_seed(self.seed, "trial", trial_number)


def make_pruner(name: str, settings: StudySettings) -> optuna.pruners.BasePruner:
    """The pruner called ``name``, scaled to the study's epochs (pruner steps are epochs).

    ``median`` waits for 5 finished trials and the first tenth of the epochs, so that slow
    starters such as the SGD baseline are not cut before their loss curve bends.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=settings.epochs // 10
        )
    if name == "hyperband":
        min_resource = max(settings.report_every, settings.epochs // 100)
        return optuna.pruners.HyperbandPruner(
            min_resource=min_resource, max_resource=settings.epochs
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNER_CHOICES)}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler called ``name``, seeded with ``seed`` (TPE keeps Optuna's defaults)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_CHOICES)}")


def stored_settings(study: optuna.Study) -> StudySettings:
    """The settings a study was created with."""
    if SETTINGS_ATTR not in study.user_attrs:
        raise UsageError(
            f"study {study.study_name!r} was not made by search.run (it has no stored settings); "
            "pass another --study"
        )
    return StudySettings(**study.user_attrs[SETTINGS_ATTR])


def _check_same_settings(
    stored: StudySettings, requested: dict[str, int | None], name: str
) -> None:
    for key, value in requested.items():
        if value is not None and value != getattr(stored, key):
            flag = "--" + key.replace("_", "-")
            raise UsageError(
                f"study {name!r} was created with {flag} {getattr(stored, key)}, not {value}; "
                f"drop {flag} to resume it, or pass a new --study"
            )


def study_exists(storage: optuna.storages.BaseStorage, study_name: str) -> bool:
    """Whether ``storage`` holds a study called ``study_name``."""
    return study_name in optuna.get_all_study_names(storage)


def open_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    *,
    seed: int | None,
    epochs: int | None,
    report_every: int | None,
) -> tuple[optuna.Study, StudySettings, bool]:
    """Resume study ``study_name`` or create it with the baseline enqueued as trial 0.

    ``None`` for a setting means "the stored value" on resume and the default on creation.
    Returns the study, its settings and whether it was created now.

    Raises:
        UsageError: a given setting differs from the one the existing study was created with.
    """
    requested = {"seed": seed, "epochs": epochs, "report_every": report_every}

    if study_exists(storage, study_name):
        study = optuna.load_study(study_name=study_name, storage=storage)
        settings = stored_settings(study)
        _check_same_settings(settings, requested, study_name)
        return study, settings, False

    settings = StudySettings(
        **{key: value for key, value in requested.items() if value is not None}
    )
    study = optuna.create_study(storage=storage, study_name=study_name, direction="minimize")
    study.set_user_attr(SETTINGS_ATTR, asdict(settings))
    study.enqueue_trial(BASELINE_PARAMS, user_attrs={BASELINE_ATTR: True})
    logger.info("created study %r with the baseline enqueued as trial 0", study_name)
    return study, settings, True


def open_study_exclusively(
    location: StorageLocation,
    study_name: str,
    *,
    heartbeat: Heartbeat | None,
    seed: int | None,
    epochs: int | None,
    report_every: int | None,
) -> tuple[optuna.storages.RDBStorage, optuna.Study, StudySettings, bool]:
    """:func:`open_study` under the study lock, so that workers starting at the same instant
    on a fresh database create the schema, the study and the baseline exactly once."""
    lock = StudyLock(location, study_name)
    try:
        with lock.held():
            storage = open_storage(location, heartbeat=heartbeat)
            study, settings, created = open_study(
                storage, study_name, seed=seed, epochs=epochs, report_every=report_every
            )
    finally:
        lock.close()
    return storage, study, settings, created
