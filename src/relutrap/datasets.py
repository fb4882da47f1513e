"""Data sets as problems: a finite training set, a held-out split, exact censuses.

A problem may be a data set instead of an input law on a box: a CSV file, a NumPy
file (``.npy`` with a structured dtype or a 2-D array, or ``.npz`` with one 1-D array
per column), or a regression set bundled with scikit-learn (``diabetes``, which ships
with the package and needs no download).  Its named input columns give the inputs
``x_i`` in ``R^d`` and its target column the labels ``y_i``.

Preparation, in this order:

1. the rows are split once, by a permutation drawn from ``split_seed``: a fraction
   ``holdout`` of them (rounded) is held out, the rest is the training set;
2. the training set is cut to its first ``max_train`` rows of that permutation;
3. with ``standardize``, inputs and target are centred and scaled by the mean and
   standard deviation of the training set (a constant column is only centred), and
   the held-out rows get the same affine map.

The *empirical risk* is the mean squared error on the whole training set.

On a finite set inactivity is decidable exactly: a neuron is inactive on the set iff
its pre-activation is ``<= 0`` at each of its finitely many inputs, and that test is
exact for every layer at the moment it is taken.  A first-layer neuron inactive on
every training input stays so for the whole training (its inputs never change and it
gets zero gradient); a deeper one may be woken up by the layers below it, so only the
first layer (and the sign test of deeper layers) is *certified* in the sense of
:mod:`relutrap.inactivity`.

Errors in a file raise :class:`DataError` naming the file, the line (CSV) or row
(NumPy) and the column.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from relutrap import theory
from relutrap.domains import FiniteSet
from relutrap.init import Initialization
from relutrap.networks import Architecture
from relutrap.theory import Probability

BUNDLED = ("diabetes",)
SUFFIXES = (".csv", ".npy", ".npz")


class DataError(ValueError):
    """A data set that cannot be used; the message names file, line and column."""


@dataclass(frozen=True)
class DataSource:
    """Where a data set comes from and how it is prepared.

    Attributes:
        path: the absolute path of a CSV or NumPy file; ``""`` for a bundled set.
        dataset: the name of a bundled set (see :data:`BUNDLED`); ``""`` for a file.
        inputs: the input columns, in order; empty means every column but the
            target.
        target: the target column; ``""`` means the bundled set's own target.
        standardize: centre and scale inputs and target by the training set.
        holdout: the fraction of rows held out, in ``[0, 1)``.
        split_seed: the seed of the permutation that splits the rows.
        max_train: the most training rows kept; 0 keeps them all.
        digest: a SHA-256 of the selected raw values; it names the content, so the
            cell (and its runs) do not depend on where the file lies.
    """

    path: str = ""
    dataset: str = ""
    inputs: tuple[str, ...] = ()
    target: str = ""
    standardize: bool = True
    holdout: float = 0.2
    split_seed: int = 0
    max_train: int = 0
    digest: str = ""

    def name(self) -> str:
        """The file's name or the bundled set's name."""
        return Path(self.path).name if self.path else self.dataset


class Dataset(NamedTuple):
    """A prepared data set; arrays are float64 and read-only.

    Attributes:
        train_inputs: ``(n, d)``; train_targets: ``(n,)``.
        holdout_inputs: ``(m, d)``; holdout_targets: ``(m,)``; ``m`` may be 0.
        columns: the names of the ``d`` input columns.
        target: the name of the target column.
        digest: see :attr:`DataSource.digest`.
    """

    train_inputs: np.ndarray
    train_targets: np.ndarray
    holdout_inputs: np.ndarray
    holdout_targets: np.ndarray
    columns: tuple[str, ...]
    target: str
    digest: str


# Reading: each reader returns the table's columns as raw arrays (object or numeric)
# and, for every row, where a reader of the file finds it ("line 7", "row 3").


def _reads_as_number(text: str) -> bool:
    try:
        float(str(text).strip())
    except ValueError:
        return False
    return True


def _csv_lines(path: Path, text: str) -> tuple[list[int], int]:
    """The first line of every non-empty record after the header, and the header's
    field count; raise :class:`DataError` for a ragged record."""
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file, no header line") from None
    if header and all(_reads_as_number(name) for name in header):
        raise DataError(
            f"{path}, line 1: the header holds only numbers ({', '.join(header)}); "
            "the first line must name the columns"
        )
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(
                f"{path}, line 1, column {name!r}: duplicate column name in the header"
            )
        seen.add(name)
    lines = []
    start = reader.line_num + 1
    for record in reader:
        if record:
            if len(record) < len(header):
                raise DataError(
                    f"{path}, line {start}, column {header[len(record)]!r}: missing "
                    f"(ragged row: {len(record)} fields where the header, line 1, "
                    f"has {len(header)})"
                )
            if len(record) > len(header):
                raise DataError(
                    f"{path}, line {start}, column {len(header) + 1}: a field beyond "
                    f"the header (ragged row: {len(record)} fields where the header, "
                    f"line 1, has {len(header)})"
                )
            lines.append(start)
        start = reader.line_num + 1
    return lines, len(header)


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None
    if not text.strip():
        raise DataError(f"{path}: empty file, no header line")
    lines, _ = _csv_lines(path, text)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(f"{path}: not a CSV table: {error}") from None
    if len(frame) != len(lines):
        # pandas and the csv module disagree on where the records are: name rows.
        lines = [index + 1 for index in range(len(frame))]
        where = [f"record {line}" for line in lines]
    else:
        where = [f"line {line}" for line in lines]
    columns = {str(name): frame[name].to_numpy(dtype=object) for name in frame}
    return columns, where


_NPY_SIGNATURE = b"\x93NUMPY"
_NPZ_SIGNATURE = b"PK\x03\x04"


def _read_numpy(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    with path.open("rb") as file:
        start = file.read(len(_NPY_SIGNATURE))
    if not start.startswith((_NPY_SIGNATURE, _NPZ_SIGNATURE)):
        raise DataError(
            f"{path}: not a NumPy file (it starts with neither the .npy nor the "
            ".npz signature)"
        )
    unreadable = (
        "not a readable array of numbers (malformed, truncated, or holding Python "
        "objects, which are not read)"
    )
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise DataError(f"{path}: {unreadable}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            columns = {}
            for name in loaded.files:
                try:
                    columns[name] = loaded[name]
                except (ValueError, OSError, EOFError, zipfile.BadZipFile):
                    raise DataError(f"{path}, column {name!r}: {unreadable}") from None
                if not isinstance(columns[name], np.ndarray):
                    raise DataError(
                        f"{path}, member {name!r}: not a NumPy array (an .npz data "
                        "set holds one .npy array per column)"
                    )
        for name, values in columns.items():
            if values.ndim != 1:
                raise DataError(
                    f"{path}, column {name!r}: shape {values.shape}; every array of "
                    "an .npz data set must be one column (1-D)"
                )
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            first = next(iter(lengths))
            odd = next(name for name in lengths if lengths[name] != lengths[first])
            shortest = min(lengths.values())
            raise DataError(
                f"{path}, row {shortest + 1}, column {odd!r}: ragged columns: "
                f"{odd!r} has {lengths[odd]} rows, {first!r} has {lengths[first]}"
            )
    elif loaded.dtype.names:
        if loaded.ndim != 1:
            raise DataError(f"{path}: a structured array must be 1-D")
        columns = {name: loaded[name] for name in loaded.dtype.names}
    else:
        if loaded.ndim != 2:
            raise DataError(
                f"{path}: shape {loaded.shape}; a plain .npy data set is a 2-D "
                "array whose columns are named '0', '1', ..."
            )
        columns = {str(j): loaded[:, j] for j in range(loaded.shape[1])}
    rows = len(next(iter(columns.values()))) if columns else 0
    return columns, [f"row {index + 1}" for index in range(rows)]


def _read_bundled(name: str) -> tuple[dict[str, np.ndarray], list[str]]:
    from sklearn import datasets as bundled

    loaded = getattr(bundled, f"load_{name}")()
    columns = {
        str(column): loaded.data[:, j] for j, column in enumerate(loaded.feature_names)
    }
    columns["target"] = loaded.target
    return columns, [f"row {index + 1}" for index in range(len(loaded.target))]


def _numeric(label: str, name: str, values: np.ndarray, where: list[str]) -> np.ndarray:
    """The column as float64; raise naming the first non-numeric or non-finite
    entry."""
    if values.dtype.kind in "biuf":
        numbers = values.astype(np.float64)
    else:
        numbers = np.empty(len(values))
        for index, entry in enumerate(values):
            try:
                numbers[index] = float(str(entry).strip())
            except ValueError:
                shown = str(entry)
                reason = "empty field" if not shown.strip() else f"{shown!r}"
                raise DataError(
                    f"{label}, {where[index]}, column {name!r}: not a number: {reason}"
                ) from None
    bad = np.flatnonzero(~np.isfinite(numbers))
    if bad.size:
        index = int(bad[0])
        raise DataError(
            f"{label}, {where[index]}, column {name!r}: not a finite number "
            f"({values[index]!s})"
        )
    return numbers


def _read_file(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The raw columns of a CSV or NumPy file and where each row lies."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown kind of file; allowed: {', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    return _read_csv(path) if suffix == ".csv" else _read_numpy(path)


def _chosen(
    label: str, path, columns: dict, inputs: tuple[str, ...], target: str
) -> None:
    """Check that the named ``inputs`` and ``target`` are distinct columns."""
    known = ", ".join(columns)
    where = ", line 1" if str(path).lower().endswith(".csv") else ""
    for name in (*inputs, *([target] if target else [])):
        if name not in columns:
            raise DataError(
                f"{label}{where}, column {name!r}: no such column; columns: {known}"
            )
    twice = next((name for name in inputs if inputs.count(name) > 1), None)
    if twice is not None:
        raise DataError(f"{label}, column {twice!r}: named twice among the inputs")
    if target and target in inputs:
        raise DataError(f"{label}, column {target!r}: both an input and the target")


def read(source: DataSource) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """The raw inputs ``(N, d)`` and targets ``(N,)`` of ``source``, validated, with
    the input columns' names and the target's name."""
    if source.path:
        label = str(Path(source.path))
        columns, where = _read_file(Path(source.path))
        target = source.target
    else:
        if source.dataset not in BUNDLED:
            raise DataError(
                f"unknown bundled data set {source.dataset!r}; allowed: "
                + ", ".join(BUNDLED)
            )
        label = f"bundled data set {source.dataset}"
        columns, where = _read_bundled(source.dataset)
        target = source.target or "target"

    if not where:
        raise DataError(f"{label}: no data rows")
    if not target:
        raise DataError(
            f"{label}: no target column given; columns: {', '.join(columns)}"
        )
    inputs = tuple(source.inputs) or tuple(name for name in columns if name != target)
    _chosen(label, source.path, columns, inputs, target)
    if not inputs:
        raise DataError(f"{label}: no input column besides the target {target!r}")

    features = np.stack(
        [_numeric(label, name, columns[name], where) for name in inputs], axis=1
    )
    labels = _numeric(label, target, columns[target], where)
    return features, labels, tuple(inputs), target


def _is_numeric(values: np.ndarray) -> bool:
    """Whether a raw column holds numbers: a numeric dtype, or some text entry that
    reads as a number (a column of mere labels does not)."""
    return values.dtype.kind in "biuf" or any(map(_reads_as_number, values))


def read_points(
    path: str | Path, inputs: tuple[str, ...] = (), target: str = ""
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The rows of a data file as points ``(N, d)`` in float64, with the names of
    their ``d`` columns, read and checked as a data set's inputs.

    Args:
        path: a CSV file with a header line, an ``.npy`` or an ``.npz`` (see
            :class:`DataSource`).
        inputs: the columns to take, in order; empty takes every numeric column
            (a column of mere text labels is left out) but ``target``.
        target: a column to leave out when ``inputs`` is empty; ``""`` for none.

    Raises:
        DataError: the file is missing or malformed, a column is missing, or an
            entry of a chosen column is not a finite number.
    """
    path = Path(path)
    label = str(path)
    columns, where = _read_file(path)
    if not where:
        raise DataError(f"{label}: no data rows")
    _chosen(label, path, columns, tuple(inputs), target)
    if not inputs:
        inputs = tuple(
            name for name in columns if name != target and _is_numeric(columns[name])
        )
    if not inputs:
        raise DataError(f"{label}: no numeric column; columns: {', '.join(columns)}")
    points = np.stack(
        [_numeric(label, name, columns[name], where) for name in inputs], axis=1
    )
    return points, tuple(inputs)


def digest(inputs: np.ndarray, targets: np.ndarray, columns, target: str) -> str:
    """A SHA-256 of the selected raw values and their column names."""
    hasher = hashlib.sha256()
    hasher.update(repr((tuple(columns), target, inputs.shape)).encode())
    hasher.update(np.ascontiguousarray(inputs, np.float64).tobytes())
    hasher.update(np.ascontiguousarray(targets, np.float64).tobytes())
    return hasher.hexdigest()[:16]


def split(rows: int, holdout: float, split_seed: int, max_train: int):
    """Training and held-out row indices: a permutation from ``split_seed`` whose
    first ``round(holdout * rows)`` entries are held out; the training rows are the
    rest, cut to the first ``max_train`` (0: no cut)."""
    order = np.random.default_rng(split_seed).permutation(rows)
    held = int(round(holdout * rows))
    train = order[held:]
    if max_train:
        train = train[:max_train]
    return train, order[:held]


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, np.float64)
    array.setflags(write=False)
    return array


def standardization(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre and scale of each column of ``values`` (rows are examples): the
    mean and the standard deviation, a scale of 0 taken as 1."""
    centre, scale = values.mean(axis=0), values.std(axis=0)
    return centre, np.where(scale > 0, scale, 1.0)


@functools.lru_cache(maxsize=16)
def _prepare(source: DataSource) -> Dataset:
    inputs, targets, columns, target = read(source)
    train, held = split(
        len(targets), source.holdout, source.split_seed, source.max_train
    )
    if len(train) == 0:
        raise DataError(
            f"{source.path or source.dataset}: no training row left after holding "
            f"out {len(held)} of {len(targets)}"
        )
    train_x, train_y = inputs[train], targets[train]
    held_x, held_y = inputs[held], targets[held]
    if source.standardize:
        centre, scale = standardization(train_x)
        train_x, held_x = (train_x - centre) / scale, (held_x - centre) / scale
        target_centre, target_scale = standardization(train_y)
        train_y = (train_y - target_centre) / target_scale
        held_y = (held_y - target_centre) / target_scale
    return Dataset(
        _frozen(train_x),
        _frozen(train_y),
        _frozen(held_x.reshape(len(held), len(columns))),
        _frozen(held_y),
        columns,
        target,
        digest(inputs, targets, columns, target),
    )


def load(source: DataSource) -> Dataset:
    """The prepared data set of ``source`` (cached; its digest is not part of the
    cache key, and a digest given in ``source`` must match the content).

    Raises:
        DataError: the file is missing or malformed, a column is missing or not
            numeric, or the content changed since ``source.digest`` was taken.
    """
    dataset = _prepare(replace(source, digest=""))
    if source.digest and source.digest != dataset.digest:
        raise DataError(
            f"{source.path or source.dataset}: content changed (digest "
            f"{dataset.digest}, expected {source.digest})"
        )
    return dataset


def best_constant_is_optimal(dataset: Dataset) -> bool:
    """Whether the mean target over each group of equal training inputs is the same
    for every group: then no function of the inputs beats the best constant on the
    training set.  Otherwise a single ReLU ridge does (see
    :func:`relutrap.engine.certified_nonconvergent`)."""
    _, group = np.unique(dataset.train_inputs, axis=0, return_inverse=True)
    group = group.reshape(-1)
    sums = np.bincount(group, weights=dataset.train_targets)
    means = sums / np.bincount(group)
    return bool(np.ptp(means) <= 1e-12 * max(1.0, float(np.abs(means).max())))


@functools.lru_cache(maxsize=64)
def first_layer_inactivity(
    init: Initialization, arch: Architecture, source: DataSource
) -> Probability:
    """The probability p that one first-layer neuron is inactive on the training set
    at initialization, ``P(b + w . x_i <= 0 for every training input x_i)``: the
    finite-set case of :func:`relutrap.theory.first_layer_inactivity` (exact for at
    most three distinct inputs under normal laws, otherwise estimated with its
    error)."""
    points = FiniteSet.of(load(source).train_inputs)
    return theory.first_layer_inactivity(init, (*arch[:2], 1), points)
