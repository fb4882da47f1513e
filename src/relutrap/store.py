"""The results store: one SQLite file per experiment output directory.

Tables:

* ``experiment``: ``key, value`` pairs: the spec (canonical JSON), the versions of
  relutrap, JAX, optax, NumPy and Python, and the creation time.
* ``cells``: one row per cell: its identity, position in the grid, part, label,
  checkpoint steps, optimal risk, target variance and full record (JSON).
* ``runs``: one row per run, keyed by ``(cell, run_index)``: final risk, divergence
  step, collapse, revivals, the census per hidden layer and the checkpoint risks
  (JSON arrays), the two verdicts, and the risk on a data set's held-out split.

The database runs in WAL mode and every chunk of runs is written in one transaction,
so a killed process loses at most the chunk it was computing.  An exclusive lock file
keeps a second writer out of the same directory.
"""

from __future__ import annotations

import fcntl
import json
import platform
import sqlite3
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from relutrap.cells import Cell
from relutrap.engine import CENSUS_FIELDS, Outcomes

DATABASE = "results.sqlite"
LOCK = ".relutrap.lock"
LEVELS = "levels.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    cell TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    part TEXT NOT NULL,
    label TEXT NOT NULL,
    runs INTEGER NOT NULL,
    checkpoint_steps TEXT NOT NULL,
    optimal_risk REAL,
    target_variance REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    cell TEXT NOT NULL REFERENCES cells(cell),
    run_index INTEGER NOT NULL,
    final_risk REAL,
    diverged_step INTEGER NOT NULL,
    collapsed INTEGER NOT NULL,
    revived INTEGER NOT NULL,
    certified_first_layer INTEGER NOT NULL,
    certified_any INTEGER NOT NULL,
    certified_nonconvergent INTEGER NOT NULL,
    observed_nonconvergent INTEGER,
    census TEXT NOT NULL,
    checkpoint_risk TEXT NOT NULL,
    holdout_risk REAL,
    PRIMARY KEY (cell, run_index)
);
"""
_RUN_COLUMNS = (
    "cell, run_index, final_risk, diverged_step, collapsed, revived, "
    "certified_first_layer, certified_any, certified_nonconvergent, "
    "observed_nonconvergent, census, checkpoint_risk, holdout_risk"
)


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """Give a store written before held-out risks were recorded their column."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    if "holdout_risk" not in columns:
        with connection:
            connection.execute("ALTER TABLE runs ADD COLUMN holdout_risk REAL")


class StoreError(RuntimeError):
    """The output directory cannot be used as asked; the message says why."""


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    found = {"python": platform.python_version()}
    for package in ("relutrap", "jax", "jaxlib", "optax", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


class Store:
    """An open results database in ``directory``."""

    def __init__(self, directory: Path, connection: sqlite3.Connection):
        self.directory = directory
        self.connection = connection

    def experiment(self) -> dict[str, str]:
        rows = self.connection.execute("SELECT key, value FROM experiment")
        return dict(rows.fetchall())

    def spec(self) -> dict:
        return json.loads(self.experiment()["spec"])

    def stored_spec(self) -> dict | None:
        """The stored spec, or ``None`` for a new output."""
        stored = self.experiment().get("spec")
        return None if stored is None else json.loads(stored)

    def begin(self, spec: dict, replace: bool = False) -> None:
        """Record the spec of a new output, or check it equals the stored one.

        With ``replace`` a different stored spec is replaced (the caller has checked
        that the new one extends it) and the time of the change recorded.
        """
        stored = self.experiment().get("spec")
        text = json.dumps(spec, sort_keys=True)
        if stored is not None and stored != text and replace:
            with self.connection:
                self.connection.executemany(
                    "INSERT OR REPLACE INTO experiment VALUES (?, ?)",
                    [
                        ("spec", text),
                        ("extended", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
                    ],
                )
        elif stored is None:
            with self.connection:
                entries = {
                    "spec": text,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                entries.update({f"version.{k}": v for k, v in versions().items()})
                self.connection.executemany(
                    "INSERT INTO experiment VALUES (?, ?)", entries.items()
                )
        elif stored != text:
            differing = sorted(
                key
                for key in set(spec) | set(json.loads(stored))
                if spec.get(key) != json.loads(stored).get(key)
            )
            raise StoreError(
                f"{self.directory} holds the results of a different spec "
                f"(it differs in: {', '.join(differing)}); run it with its own spec "
                "to resume, add --extend to add runs or cells to it, or choose "
                "another --out"
            )

    def add_cell(
        self,
        cell: Cell,
        position: int,
        runs: int,
        checkpoint_steps,
        optimal_risk: float | None,
        target_variance: float,
    ) -> None:
        """Record a cell, or update the planned runs and grid position of a stored
        one (an extended spec may plan more runs and insert cells)."""
        with self.connection:
            self.connection.execute(
                "INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(cell) DO UPDATE SET runs = excluded.runs, "
                "position = excluded.position",
                (
                    cell.identity,
                    position,
                    cell.part,
                    cell.label(),
                    runs,
                    json.dumps([int(step) for step in checkpoint_steps]),
                    optimal_risk,
                    target_variance,
                    json.dumps(cell.as_record(), sort_keys=True),
                ),
            )

    def stored_runs(self, cell: Cell) -> set[int]:
        rows = self.connection.execute(
            "SELECT run_index FROM runs WHERE cell = ?", (cell.identity,)
        )
        return {index for (index,) in rows}

    def add_runs(
        self,
        cell: Cell,
        outcomes: Outcomes,
        certified: np.ndarray,
        observed: np.ndarray | None,
    ) -> None:
        """Store a chunk of runs in one transaction."""
        rows = []
        for i, run_index in enumerate(outcomes.run_index):
            census = {
                name: getattr(outcomes, name)[i].tolist() for name in CENSUS_FIELDS
            }
            rows.append(
                (
                    cell.identity,
                    int(run_index),
                    _finite_or_none(outcomes.final_risk[i]),
                    int(outcomes.diverged_step[i]),
                    int(outcomes.collapsed[i]),
                    int(outcomes.revived[i].sum()),
                    int(outcomes.certified_init[i, 0]),
                    int(outcomes.certified_init[i].sum()),
                    int(certified[i]),
                    None if observed is None else int(observed[i]),
                    json.dumps(census),
                    json.dumps(
                        [_finite_or_none(r) for r in outcomes.checkpoint_risk[i]]
                    ),
                    None
                    if outcomes.holdout_risk is None
                    else _finite_or_none(outcomes.holdout_risk[i]),
                )
            )
        with self.connection:
            self.connection.executemany(
                f"INSERT INTO runs ({_RUN_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def cells(self) -> list[dict]:
        cursor = self.connection.execute("SELECT * FROM cells ORDER BY position")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]

    def runs(self, cell_identity: str) -> list[dict]:
        cursor = self.connection.execute(
            "SELECT * FROM runs WHERE cell = ? ORDER BY run_index", (cell_identity,)
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor]


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=60)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def check_output(directory: str | Path) -> None:
    """Raise :class:`StoreError` where ``directory`` cannot hold a store: it exists
    and is not a directory.  Creates nothing."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise StoreError(f"--out {directory} exists and is not a directory")


@contextmanager
def open_for_writing(directory: str | Path):
    """Open (creating if needed) the store in ``directory`` for one writer.

    Raises:
        StoreError: another process is writing to the same directory.
    """
    directory = Path(directory)
    check_output(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"cannot create {directory}: {error.strerror}") from None
    with open(directory / LOCK, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"another relutrap process is writing to {directory}; "
                "wait for it to finish or choose another --out"
            ) from None
        connection = _connect(directory / DATABASE)
        try:
            connection.executescript(_SCHEMA)
            _add_missing_columns(connection)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise StoreError(f"{directory / DATABASE}: {error}") from None
        try:
            yield Store(directory, connection)
        finally:
            connection.close()


def being_written(directory: str | Path) -> bool:
    """Whether a relutrap process holds the writer's lock of ``directory`` now."""
    try:
        lock = open(Path(directory) / LOCK)
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


@contextmanager
def open_for_reading(directory: str | Path):
    """Open an existing store read-only."""
    path = Path(directory) / DATABASE
    if not Path(directory).exists():
        raise StoreError(f"{directory} does not exist")
    if not Path(directory).is_dir():
        raise StoreError(
            f"{directory} is a file; give the study's output directory"
            + (
                f", {Path(directory).parent}"
                if Path(directory).name == DATABASE
                else ""
            )
        )
    if not path.is_file():
        raise StoreError(f"{directory} holds no relutrap results ({DATABASE} missing)")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        store = Store(Path(directory), connection)
        store.experiment()
    except sqlite3.DatabaseError as error:
        connection.close()
        raise StoreError(f"{path}: not a relutrap results database ({error})") from None
    try:
        yield store
    finally:
        connection.close()


def read_levels(directory: str | Path) -> dict:
    """The risk levels cached beside a study's database, by key (empty if none or
    unreadable: they are recomputed)."""
    try:
        return json.loads((Path(directory) / LEVELS).read_text())
    except (OSError, ValueError):
        return {}


def write_levels(directory: str | Path, levels: dict) -> None:
    """Cache risk levels beside the database, replacing the file atomically; a
    directory that cannot be written keeps no cache."""
    path = Path(directory) / LEVELS
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(json.dumps(levels, indent=1, sort_keys=True))
        temporary.replace(path)
    except OSError:
        pass
