"""Rows of the report's tables, built from summary records without a study."""

import json

from relutrap.analysis import held_fixed
from relutrap.report.figures import Group
from relutrap.report.page import rate_row
from relutrap.report.reading import _theory_clause

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


def first_layer(scheme: str, p: float, count: int) -> dict:
    """A width-1 cell of a part that sweeps the initialization."""
    return record(scheme) | {
        "width": 1,
        "depth": 1,
        "p_first_layer_neuron": p,
        "theory_some_first_layer_inactive": p,
        "some_first_layer_inactive": {
            "count": count,
            "runs": 16,
            "fraction": count / 16,
            "low": 0.1,
            "high": 0.7,
        },
    }


def test_the_reading_quotes_the_theory_of_each_initialization_of_a_part():
    cells = [
        first_layer("normal", 0.375, 6),
        first_layer("he", 0.5, 8),
        first_layer("glorot", 0.5, 8),
    ]
    group = Group("sweep", "sweep", "width", tuple(cells))

    clause = _theory_clause(cells, group)

    assert "is 38% (p = 0.375, normal init; measured: 38% [10%, 70%]" in clause
    assert "and 50% (p = 0.5, he, glorot init; measured: 50% of the runs" in clause
