"""Finished trials per minute with 1, 2 and 4 workers sharing a study, SQLite vs PostgreSQL.

    python benchmarks/fleet_speed.py            # about three minutes on 2 cores
    python benchmarks/fleet_speed.py --quick

Each worker is a separate ``python -m search.run --max-trials N`` command, as on a cluster.
The rate is counted from the first trial's start to the last trial's end, so that process
start-up (about 4 s for importing torch and Optuna) is left out; the wall-clock rate is
printed beside it. Short trials make the storage's share of the time visible.
PostgreSQL must be running on 127.0.0.1:5432 with trust authentication (as in CI).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def run_fleet(storage: str, n_workers: int, n_trials: int, epochs: int, folder: Path) -> tuple:
    command = [
        sys.executable, "-m", "search.run", "--storage", storage, "--study", "bench",
        "--max-trials", str(n_trials), "--epochs", str(epochs), "--report-every", "100",
        "--pruner", "none", "--sampler", "random", "--engine", "eager",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    started = time.perf_counter()
    workers = [
        subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.DEVNULL)
        for _ in range(n_workers)
    ]
    if any(worker.wait() != 0 for worker in workers):
        raise RuntimeError(f"a worker failed on {storage}")
    wall_s = time.perf_counter() - started

    trials = optuna.load_study(study_name="bench", storage=storage).trials
    span_s = (
        max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    ).total_seconds()
    return len(trials) / span_s * 60, len(trials) / wall_s * 60


def postgres_database(admin: sqlalchemy.Engine, name: str, *, create: bool) -> None:
    with admin.connect() as connection:
        statement = (
            f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE "{name}" WITH (FORCE)'
        )
        connection.execute(sqlalchemy.text(statement))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    n_trials, epochs = (4, 100) if args.quick else (24, 500)
    admin = sqlalchemy.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")

    print(f"{n_trials} trials x {epochs} epochs, random sampler, no pruner")
    print("backend      workers  trials/min (first start to last end)  trials/min (wall)")
    with tempfile.TemporaryDirectory() as folder:
        for backend in ("sqlite", "postgresql"):
            for n_workers in (1, 2, 4):
                name = f"ann_bench_{uuid.uuid4().hex[:8]}"
                if backend == "sqlite":
                    storage = f"sqlite:///{Path(folder) / (name + '.db')}"
                else:
                    postgres_database(admin, name, create=True)
                    storage = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
                try:
                    steady, wall = run_fleet(storage, n_workers, n_trials, epochs, Path(folder))
                finally:
                    if backend == "postgresql":
                        postgres_database(admin, name, create=False)
                print(f"{backend:12s} {n_workers:7d}  {steady:36.1f}  {wall:17.1f}", flush=True)
    admin.dispose()


if __name__ == "__main__":
    main()
