"""Reading stored runs back, and comparing two stores run for run."""

import json
import math
import sqlite3
from pathlib import Path

from relutrap.store import DATABASE

EXACT = (
    "diverged_step",
    "collapsed",
    "revived",
    "certified_first_layer",
    "certified_any",
    "certified_nonconvergent",
    "observed_nonconvergent",
    "census",
)


def stored_runs(directory: Path) -> dict[tuple[str, int], dict]:
    """Every stored run by ``(cell, run_index)``; JSON columns decoded."""
    connection = sqlite3.connect(f"file:{Path(directory) / DATABASE}?mode=ro", uri=True)
    try:
        cursor = connection.execute("SELECT * FROM runs")
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor]
    finally:
        connection.close()
    for row in rows:
        row["census"] = json.loads(row["census"])
        row["checkpoint_risk"] = json.loads(row["checkpoint_risk"])
    return {(row["cell"], row["run_index"]): row for row in rows}


def run_count(directory: Path) -> int:
    """The number of stored runs, counting duplicates if there were any."""
    connection = sqlite3.connect(f"file:{Path(directory) / DATABASE}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        connection.close()


def _close(left, right) -> bool:
    if left is None or right is None:
        return left is right
    return math.isclose(left, right, rel_tol=1e-6, abs_tol=1e-30)


def assert_same_runs(left: Path, right: Path) -> None:
    """Both stores hold the same runs: census and verdicts identical, risks equal to
    1e-6 relative; and neither holds a run twice."""
    first, second = stored_runs(left), stored_runs(right)

    assert sorted(first) == sorted(second)
    assert run_count(left) == len(first) and run_count(right) == len(second)
    for key, row in first.items():
        other = second[key]
        for name in EXACT:
            assert row[name] == other[name], (key, name)
        assert _close(row["final_risk"], other["final_risk"]), key
        assert len(row["checkpoint_risk"]) == len(other["checkpoint_risk"])
        for a, b in zip(row["checkpoint_risk"], other["checkpoint_risk"]):
            assert _close(a, b), key
