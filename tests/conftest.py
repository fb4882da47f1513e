"""Shared configuration and small fixtures of the test suite.

Strict dtype promotion is on for every test, so an implicit float32 -> float64 (or
int -> float) promotion anywhere in the package fails loudly.
"""

import copy

import jax
import pytest

from relutrap.cells import Cell
from relutrap.init import Initialization
from relutrap.problems import Problem

jax.config.update("jax_numpy_dtype_promotion", "strict")

TINY_SPEC = {
    "name": "tiny",
    "seed": 3,
    "runs": 8,
    "chunk_size": 4,
    "parts": [
        {
            "name": "w",
            "width": [3],
            "steps": 30,
            "problem": {"evaluation_size": 64},
            "optimizers": [{"name": "adam", "learning_rate": 0.01}],
        }
    ],
}


@pytest.fixture
def tiny_spec() -> dict:
    """A one-cell spec (8 runs in chunks of 4) whose cell is :func:`tiny_cell`."""
    return copy.deepcopy(TINY_SPEC)


def tiny_cell(**changes) -> Cell:
    """A shallow width-3 student of a width-3 teacher on [0, 1], Adam, 30 steps."""
    fields = {
        "part": "w",
        "problem": Problem(evaluation_size=64),
        "hidden": (3,),
        "init": Initialization(),
        "optimizer": "adam",
        "learning_rate": 0.01,
        "steps": 30,
    }
    fields.update(changes)
    return Cell(**fields)


@pytest.fixture(scope="session")
def make_cell():
    """The factory :func:`tiny_cell`; keyword arguments replace its fields."""
    return tiny_cell
