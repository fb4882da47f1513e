"""Rows of the report's tables, built from summary records without a study."""

import json

from relutrap.analysis import held_fixed
from relutrap.report.page import rate_row

HELD_FIXED = {
    "part": "sweep",
    "optimizer": "adam",
    "convention": "book",
    "schedule": {"kind": "constant"},
    "learning_rate": 0.001,
    "steps": 100,
    "batch_size": 64,
    "initialization": {"scheme": "normal", "bias": "default"},
}


def record(scheme: str) -> dict:
    """A summary record's factors; ``init`` is the scheme's name."""
    return HELD_FIXED | {
        "initialization": {"scheme": scheme, "bias": "default"},
        "init": scheme,
    }


def fit(scheme: str) -> dict:
    return {
        "part": "sweep",
        "axis": "width",
        "fixed": {"depth": 1},
        "held_fixed": held_fixed(record(scheme)),
        "event": "certified_first_layer",
        "slope": -0.5,
        "low": -0.7,
        "high": -0.3,
        "theory_slope": -0.47,
    }


def test_rate_rows_of_a_swept_initialization_name_it():
    records = [record(scheme) for scheme in ("normal", "he")]

    rows = [rate_row(fit(name), records) for name in ("normal", "he")]

    assert [row["optimizer"] for row in rows] == ["Adam, normal init", "Adam, he init"]
    held = json.loads(rows[1]["data"]["held-fixed"])
    assert held["initialization"]["scheme"] == "he"
