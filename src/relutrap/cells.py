"""A cell: one point of an experiment grid, and the identity of its runs.

A *run* is identified by ``(experiment seed, cell, run index)``.  Its random keys are
folded from these three numbers alone, so a run's result does not depend on the chunk
it was computed in, on the backend, or on resuming.  The cell's number is a hash of
its content, so adding cells to a grid or reordering them changes no run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jax

from relutrap import networks, optimizers, schedules
from relutrap.init import Initialization
from relutrap.networks import Architecture, architecture
from relutrap.problems import Problem

_NOT_IN_STREAM = ("part", "steps", "tolerance", "checkpoints")
# Fields added later: left out of the hashes at their defaults, so that the cells
# of earlier studies keep their identity and their runs.
_DEFAULTS = {
    "convention": "book",
    "schedule": (),
    "activation": "relu",
    "negative_slope": 0.01,
}
_BOX_ONLY = ("shape", "center", "radius")


def _digest(record: dict) -> str:
    text = json.dumps(record, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """Everything that defines the runs of one grid point.

    Attributes:
        part: the name of the part of the experiment the cell belongs to.
        problem: input law, domain and target.
        hidden: the hidden widths ``(l1, ..., lL)``.
        init: the initialization scheme.
        optimizer: the method's name (see :mod:`relutrap.optimizers`), or
            ``"optax:<alias>"`` for an optax optimizer.
        learning_rate: the learning rate gamma (at step 1 of a schedule's factor 1).
        settings: the method's other hyperparameters, as sorted ``(name, value)``.
        steps: the number of training steps.
        batch_size: inputs drawn per step.
        tolerance: a run converged when ``(risk - optimal risk) / Var f(X)`` is at
            most this.
        dtype: ``float32`` or ``float64``.
        checkpoints: how many log-spaced steps record the risk.
        convention: whose update rule the name means: ``book``, ``torch``,
            ``optax``, ``keras`` or ``paper`` (see :mod:`relutrap.optimizers`).
        schedule: the learning-rate schedule as sorted ``(name, value)`` pairs, one
            of them ``("kind", ...)`` (see :mod:`relutrap.schedules`); empty for a
            constant rate.
        activation: the hidden layers' activation, ``relu``, ``leaky_relu`` or
            ``softplus`` (see :func:`relutrap.networks.activation`).
        negative_slope: the slope of ``leaky_relu`` below 0.
    """

    part: str
    problem: Problem
    hidden: tuple[int, ...]
    init: Initialization
    optimizer: str
    learning_rate: float
    settings: tuple[tuple[str, Any], ...] = ()
    steps: int = 1000
    batch_size: int = 64
    tolerance: float = 1e-4
    dtype: str = "float32"
    checkpoints: int = 12
    convention: str = "book"
    schedule: tuple[tuple[str, Any], ...] = ()
    activation: str = "relu"
    negative_slope: float = 0.01

    @property
    def architecture(self) -> Architecture:
        return architecture(self.problem.dimension, self.hidden)

    def as_record(self) -> dict:
        """The cell as plain JSON-ready data; a problem without a data set has no
        ``data`` entry, as before data sets existed."""
        record = json.loads(json.dumps(dataclasses.asdict(self)))
        if record["problem"].get("data", 0) is None:
            del record["problem"]["data"]
        return record

    @property
    def identity(self) -> str:
        """A stable hexadecimal name of the whole cell, its key in the store."""
        return _digest(self._hashed_record())

    def _hashed_record(self) -> dict:
        record = self.as_record()
        for field, default in _DEFAULTS.items():
            if getattr(self, field) == default:
                record.pop(field)
        if self.problem.shape == "box":
            for field in _BOX_ONLY:
                record["problem"].pop(field)
        # A data set is named by its content's digest, not by where its file lies.
        if "data" in record["problem"]:
            del record["problem"]["data"]["path"]
        return record

    @property
    def stream(self) -> int:
        """The number folded into the keys of the cell's runs.

        It is a hash of what shapes a trajectory.  The part's name, the step count,
        the tolerance and the number of checkpoints are left out: they change what is
        recorded or judged, not the trajectory, so a run trained for more steps
        continues the same trajectory and equal cells in two parts share their runs.
        """
        record = self._hashed_record()
        for field in _NOT_IN_STREAM:
            record.pop(field)
        return int(_digest(record)[:8], 16) & 0x7FFFFFFF

    def method(self) -> optimizers.Method:
        """The cell's optimizer with its learning rate, schedule and settings.

        A ``custom:`` optimizer is not known to the cell: it raises ``ValueError``.
        """
        if self.optimizer.startswith(optimizers.CUSTOM_PREFIX):
            raise ValueError(
                f"{self.optimizer} is given from Python; pass it to the study"
            )
        schedule = dict(self.schedule)
        kind = schedule.pop("kind", "constant")
        return optimizers.make(
            self.optimizer,
            self.learning_rate,
            convention=self.convention,
            schedule=schedules.make(kind, self.steps, **schedule),
            **dict(self.settings),
        )

    def sigma(self) -> networks.Activation:
        """The cell's activation function."""
        return networks.activation(self.activation, self.negative_slope)

    @property
    def has_inactivity(self) -> bool:
        """Whether neurons can be inactive (ReLU): otherwise the mechanism of the
        theorem does not apply and every certificate counts 0."""
        return self.activation == "relu"

    def label(self) -> str:
        """A short human-readable name."""
        widths = "-".join(str(width) for width in self.architecture)
        convention = "" if self.convention == "book" else f" ({self.convention})"
        sigma = "" if self.activation == "relu" else f" {self.activation}"
        return (
            f"{self.part}: {widths}{sigma} {self.optimizer}{convention} "
            f"lr={self.learning_rate:g}"
        )


def flat_record(cell: Cell) -> dict[str, Any]:
    """The cell's record with nested tables spread into dotted names, such as
    ``init.scheme`` or ``problem.domain``."""

    def spread(record: dict, prefix: str) -> dict[str, Any]:
        flat = {}
        for key, value in record.items():
            if isinstance(value, dict):
                flat.update(spread(value, f"{prefix}{key}."))
            else:
                flat[prefix + key] = value
        return flat

    return spread(cell.as_record(), "")


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return str(value)


def distinct_labels(cells: Iterable[Cell]) -> dict[str, str]:
    """Labels of ``cells`` by identity, told apart: where cells share their short
    :meth:`Cell.label`, each gets the fields in which they differ appended, e.g.
    ``w: 1-1-1 sgd lr=0.1 init.scheme=he_normal``."""
    cells = list(cells)
    by_label: dict[str, list[Cell]] = {}
    for cell in cells:
        by_label.setdefault(cell.label(), []).append(cell)
    labels = {}
    for label, sharing in by_label.items():
        records = [flat_record(cell) for cell in sharing]
        differing = [
            key
            for key in records[0]
            if len({json.dumps(record.get(key)) for record in records}) > 1
        ]
        for cell, record in zip(sharing, records):
            extra = " ".join(f"{key}={_shown(record.get(key))}" for key in differing)
            labels[cell.identity] = f"{label} {extra}".rstrip()
    return labels


def run_key(seed: int, cell: Cell, run_index: jax.Array) -> jax.Array:
    """The key of one run: ``fold_in(fold_in(key(seed), cell.stream), run_index)``."""
    return jax.random.fold_in(
        jax.random.fold_in(jax.random.key(seed, impl="threefry2x32"), cell.stream),
        run_index,
    )
