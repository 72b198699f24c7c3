"""Opening study storage: check the URL, refuse what would be lost or damaged, then connect.

Every check here runs before anything is created, so that a bad ``--storage`` leaves no file,
directory or table behind.
"""

import logging
import sqlite3
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
        with engine.connect():
            pass
    except ModuleNotFoundError as error:
        raise UsageError(
            f"the database driver for {parsed.drivername!r} is not installed ({error.name}); "
            "use postgresql+psycopg:// (installed with this project) or pip install the driver"
        ) from None
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise UsageError(
            f"cannot reach the database {parsed.render_as_string(hide_password=True)} ({reason}); "
            "check that the server runs and the URL is right"
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


def open_storage(location: StorageLocation) -> optuna.storages.RDBStorage:
    """Create the folders a SQLite study needs and connect Optuna's RDB storage."""
    engine_kwargs: dict[str, Any]
    if location.sqlite_path is not None:
        location.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2}

    try:
        return optuna.storages.RDBStorage(location.url, engine_kwargs=engine_kwargs)
    except (SQLAlchemyError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise UsageError(f"cannot open study storage {location.display_url}: {reason}") from None
