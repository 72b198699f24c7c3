"""A study-wide lock that every worker of a study can take, on one machine or many.

Creating a study (schema, study row, baseline) and claiming a trial under ``--max-trials`` must
each happen in one worker at a time, or simultaneous workers race: tables created twice, the
baseline enqueued twice, the budget overshot. The lock lives where the study lives:

- SQLite: an exclusive ``flock`` on a ``.lock`` file beside the database (one machine);
- PostgreSQL: a session advisory lock; MySQL: a named ``GET_LOCK``.
"""

import contextlib
import fcntl
import hashlib
import logging
from collections.abc import Iterator

import sqlalchemy

from search.storage import StorageLocation

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 120


def _lock_key(study_name: str) -> int:
    digest = hashlib.blake2b(f"ann-search/{study_name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class StudyLock:
    """Re-usable exclusive lock for one study; use ``with lock.held(): ...``."""

    # TODO: a holder that is frozen (SIGSTOP, a suspended VM) keeps the lock, so the other
    # workers' trial starts wait until it resumes or dies; a lease with a timeout would not.

    def __init__(self, location: StorageLocation, study_name: str) -> None:
        self.location = location
        self.study_name = study_name
        self._engine: sqlalchemy.Engine | None = None
        if location.sqlite_path is None:
            self._engine = sqlalchemy.create_engine(
                location.url, poolclass=sqlalchemy.pool.StaticPool, pool_pre_ping=True
            )

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the duration of the ``with`` block."""
        if self.location.sqlite_path is not None:
            with self._file_lock():
                yield
        else:
            with self._server_lock():
                yield

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        assert self.location.sqlite_path is not None
        path = self.location.sqlite_path.with_name(self.location.sqlite_path.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _server_lock(self) -> Iterator[None]:
        assert self._engine is not None
        key = _lock_key(self.study_name)
        backend = self._engine.dialect.name
        with self._engine.connect() as connection:
            if backend == "postgresql":
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
                release = sqlalchemy.text("SELECT pg_advisory_unlock(:key)")
                parameters: dict[str, object] = {"key": key}
            else:
                # TODO: MySQL's GET_LOCK path is written but not tested (no test runs MariaDB).
                name = f"ann-search-{key}"
                got_lock = connection.execute(
                    sqlalchemy.text("SELECT GET_LOCK(:name, :timeout)"),
                    {"name": name, "timeout": LOCK_TIMEOUT_S},
                ).scalar()
                if got_lock != 1:
                    raise TimeoutError(f"waited {LOCK_TIMEOUT_S} s for the lock of {name}")
                release = sqlalchemy.text("SELECT RELEASE_LOCK(:name)")
                parameters = {"name": name}
            connection.commit()
            try:
                yield
            finally:
                connection.execute(release, parameters)
                connection.commit()

    def close(self) -> None:
        """Release the lock's database connection."""
        if self._engine is not None:
            self._engine.dispose()
