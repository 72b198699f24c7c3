"""Opening study storage: check the URL, refuse what would be lost or damaged, then connect.

Every check here runs before anything is created, so that a bad ``--storage`` leaves no file,
directory or table behind.
"""

import logging
import os
import sqlite3
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from search.errors import UsageError

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///studies/ann.db"
DEFAULT_STUDY = "ann"
SUPPORTED_BACKENDS = ("sqlite", "postgresql", "mysql")
SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_BUSY_TIMEOUT_S = 60
CONNECT_TIMEOUT_S = 10
CONNECT_RETRY_DELAYS_S = (0.5, 1.0, 2.0)
"""Waits between connection attempts to a database server before giving up."""
POOL_SIZE = 2
"""Connections each worker keeps open to a database server (plus as many again on bursts)."""


@dataclass(frozen=True)
class StorageLocation:
    """A checked storage URL and where its artifacts live."""

    url: str
    artifact_dir: Path
    sqlite_path: Path | None

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for logs and summaries."""
        return make_url(self.url).render_as_string(hide_password=True)


def parse_storage_url(url: str) -> URL:
    """Parse ``url`` and check that it names a database Optuna's RDB storage supports."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UsageError(
            f"--storage {url!r} is not a database URL; "
            "use e.g. sqlite:///studies/ann.db or postgresql+psycopg://user@host/db"
        ) from None

    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise UsageError(
            f"--storage scheme {parsed.drivername!r} is not supported; "
            f"use one of {', '.join(SUPPORTED_BACKENDS)} (e.g. sqlite:///studies/ann.db)"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise UsageError(
            f"--storage {url!r} names no file; give a path such as sqlite:///studies/ann.db"
        )
    return parsed


def _check_sqlite_file(path: Path, *, must_exist: bool) -> None:
    if not path.exists():
        if must_exist:
            raise UsageError(
                f"no study file at {path}; run python -m search.run first or pass --storage"
            )
        return

    if not path.is_file():
        raise UsageError(f"--storage path {path} is not a file; point it at a .db file")
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        raise UsageError(
            f"{path} is read-only (the file or its folder); make it writable, "
            "or copy it elsewhere and pass that path to --storage"
        )
    with path.open("rb") as file:
        header = file.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise UsageError(
            f"{path} is not a SQLite database (left untouched); pass --storage with another path"
        )
    if not header:
        return

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if tables and "studies" not in tables:
        raise UsageError(
            f"{path} is a SQLite database of another program, not an Optuna study file "
            "(left untouched); pass --storage with another path"
        )


def _check_server_reachable(parsed: URL) -> None:
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = sqlalchemy.create_engine(
        parsed, connect_args=connect_args, poolclass=sqlalchemy.NullPool
    )
    try:
        for attempt, delay in enumerate((*CONNECT_RETRY_DELAYS_S, None), start=1):
            try:
                with engine.connect():
                    return
            except sqlalchemy.exc.OperationalError as error:
                if delay is None:
                    raise
                logger.warning("database not reachable (attempt %d): %s", attempt, error.orig)
                time.sleep(delay)
    except ModuleNotFoundError as error:
        raise UsageError(
            f"the database driver for {parsed.drivername!r} is not installed ({error.name}); "
            "use postgresql+psycopg:// (installed with this project) or pip install the driver"
        ) from None
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        attempts = len(CONNECT_RETRY_DELAYS_S) + 1
        raise UsageError(
            f"cannot reach the database {parsed.render_as_string(hide_password=True)} after "
            f"{attempts} attempts ({reason}); check that the server runs and the URL is right"
        ) from None
    finally:
        engine.dispose()


def locate_storage(
    url: str, *, artifact_dir: Path | None = None, must_exist: bool = False
) -> StorageLocation:
    """Check ``url`` without creating anything and decide where artifacts go.

    Artifacts default to ``artifacts/`` beside a SQLite file, else ``studies/artifacts``.
    ``must_exist`` refuses a SQLite path with no file (for commands that only read a study).

    Raises:
        UsageError: the URL is malformed or unsupported, names a file that is not an Optuna
            study database, or (for servers) cannot be connected to.
    """
    parsed = parse_storage_url(url)

    sqlite_path = None
    if parsed.get_backend_name() == "sqlite":
        sqlite_path = Path(parsed.database or "")
        _check_sqlite_file(sqlite_path, must_exist=must_exist)
        default_artifacts = sqlite_path.parent / "artifacts"
    else:
        _check_server_reachable(parsed)
        default_artifacts = Path("studies") / "artifacts"

    return StorageLocation(
        url=url, artifact_dir=artifact_dir or default_artifacts, sqlite_path=sqlite_path
    )


@dataclass(frozen=True)
class Heartbeat:
    """Workers record a heartbeat every ``interval_s``; a RUNNING trial whose worker has been
    silent for ``grace_period_s`` is failed by another worker and run again as a new trial."""

    interval_s: int
    grace_period_s: int
    max_retry: int = 3


def _schema_mismatch_message(location: StorageLocation) -> str:
    engine = sqlalchemy.create_engine(location.url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version")
            ).scalar()
    except SQLAlchemyError:
        found = "unknown"
    finally:
        engine.dispose()
    return (
        f"{location.display_url} holds a study schema ({found}) that Optuna "
        f"{optuna.__version__} cannot use; run the Optuna version that wrote it, "
        "or for an older schema: optuna storage upgrade --storage URL"
    )


def open_storage(
    location: StorageLocation, *, heartbeat: Heartbeat | None = None
) -> optuna.storages.RDBStorage:
    """Create the folders a SQLite study needs and connect Optuna's RDB storage.

    Raises:
        UsageError: the database cannot be opened, or its schema is another Optuna version's.
    """
    engine_kwargs: dict[str, Any]
    if location.sqlite_path is not None:
        location.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    else:
        engine_kwargs = {
            "pool_pre_ping": True,
            "pool_size": POOL_SIZE,
            "max_overflow": POOL_SIZE,
            "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S},
        }
    try:
        # Heartbeats and their retry callback are marked experimental; this project relies on
        # them on purpose (see search/worker.py), so the warnings would only be noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            heartbeat_kwargs: dict[str, Any] = {}
            if heartbeat is not None:
                heartbeat_kwargs = {
                    "heartbeat_interval": heartbeat.interval_s,
                    "grace_period": heartbeat.grace_period_s,
                    "heartbeat_stale_trial_callback": (
                        optuna.storages.RetryHeartbeatStaleTrialCallback(
                            max_retry=heartbeat.max_retry
                        )
                    ),
                }
            return optuna.storages.RDBStorage(
                location.url, engine_kwargs=engine_kwargs, **heartbeat_kwargs
            )
    except RuntimeError as error:
        if "compatible" in str(error):
            raise UsageError(_schema_mismatch_message(location)) from None
        raise
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise UsageError(f"cannot open study storage {location.display_url}: {reason}") from None
