"""Factors of a sweep: the values of one axis of an experiment grid.

A factor is a spec field whose values span one axis of a grid.  It is written as one
value, a list of values, or a range table:

* integers: ``{from = 1, to = 64, scale = "log2"}`` is 1, 2, 4, ..., 64, the values
  ``from * 2**k`` up to ``to``; ``{from = 100, to = 500, step = 200}`` is 100, 300,
  500 (``scale = "linear"`` is the default, with ``step`` 1);
* real numbers: ``{from = 0.001, to = 0.1, count = 3, scale = "log"}`` is 0.001,
  0.01, 0.1, ``count`` points evenly spaced on the scale (``"linear"`` by default);
* choices (names): one name or a list of names.

Every function here checks its input completely and raises ``ValueError`` with a
message that says what is allowed; the spec model turns it into a
:class:`relutrap.experiment.SpecError` that names the field.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MOST_VALUES = 10_000
INTEGER_RANGE_KEYS = ("from", "to", "scale", "step")
NUMBER_RANGE_KEYS = ("from", "to", "scale", "count")


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_keys(table: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(key) for key in set(table) - set(allowed))
    if unknown:
        raise ValueError(
            f"range: unknown key(s) {unknown}; allowed: {', '.join(allowed)}"
        )
    missing = [key for key in ("from", "to") if key not in table]
    if missing:
        raise ValueError(f"range: '{missing[0]}' is required")


def integer_range(table: dict) -> list[int]:
    """The integers of a range table ``{from, to, scale, step}``, ascending.

    ``scale = "linear"``: ``from, from + step, ...`` up to ``to``;
    ``scale = "log2"``: ``from, 2 from, 4 from, ...`` up to ``to`` (``from >= 1``).
    """
    _check_keys(table, INTEGER_RANGE_KEYS)
    low, high = table["from"], table["to"]
    scale = table.get("scale", "linear")
    step = table.get("step", 1)
    for key, value in (("from", low), ("to", high), ("step", step)):
        if not _is_integer(value):
            raise ValueError(f"range: '{key}' must be an integer, got {value!r}")
    if scale not in ("linear", "log2"):
        raise ValueError(
            f"range: scale {scale!r} unknown for integers; allowed: linear, log2"
        )
    if low > high:
        raise ValueError(
            f"range: lower bound 'from' ({low}) is above upper bound 'to' ({high})"
        )
    if scale == "log2":
        if "step" in table:
            raise ValueError("range: 'step' applies to the linear scale only")
        if low < 1:
            raise ValueError(f"range: a log2 range needs 'from' >= 1, got {low}")
        return [low * 2**k for k in range((high // low).bit_length())]
    if step < 1:
        raise ValueError(f"range: 'step' must be at least 1, got {step}")
    count = (high - low) // step + 1
    if count > MOST_VALUES:
        raise ValueError(f"range: {count} values, more than {MOST_VALUES}")
    return list(range(low, high + 1, step))


def number_range(table: dict) -> list[float]:
    """The numbers of a range table ``{from, to, count, scale}``, ascending.

    ``count`` points from ``from`` to ``to`` (both included), evenly spaced on a
    linear or a logarithmic scale; each is rounded to 12 significant digits so that
    ``{from = 0.001, to = 0.1, count = 3, scale = "log"}`` gives exactly 0.01.
    """
    _check_keys(table, NUMBER_RANGE_KEYS)
    low, high = table["from"], table["to"]
    scale = table.get("scale", "linear")
    count = table.get("count")
    for key, value in (("from", low), ("to", high)):
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"range: '{key}' must be a finite number, got {value!r}")
    if count is None:
        raise ValueError("range: 'count' is required for real numbers")
    if not _is_integer(count) or not 2 <= count <= MOST_VALUES:
        raise ValueError(
            f"range: 'count' must be an integer from 2 to {MOST_VALUES}, got {count!r}"
        )
    if scale not in ("linear", "log"):
        raise ValueError(
            f"range: scale {scale!r} unknown for numbers; allowed: linear, log"
        )
    if not low < high:
        raise ValueError(
            f"range: lower bound 'from' ({low}) must be below upper bound 'to' ({high})"
        )
    if scale == "log":
        if low <= 0:
            raise ValueError(f"range: a log range needs 'from' > 0, got {low}")
        points = np.geomspace(low, high, count)
    else:
        points = np.linspace(low, high, count)
    return [float(f"{point:.12g}") for point in points]


def _as_values(value, expand) -> list:
    if isinstance(value, dict):
        return expand(value)
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("an empty list; give at least one value")
        if len(value) > MOST_VALUES:
            raise ValueError(f"{len(value)} values, more than {MOST_VALUES}")
        return list(value)
    return [value]


def _once(values: list) -> list:
    seen = set()
    for item in values:
        if item in seen:
            raise ValueError(f"the value {item!r} is given twice; give each once")
        seen.add(item)
    return values


def integers(value, low: int, high: int, scalar: bool = True) -> int | list[int]:
    """An integer factor with every value in ``[low, high]``.

    Returns one integer where one was given (and ``scalar``), else the list.
    """
    values = _as_values(value, integer_range)
    allowed = f"must be an integer from {low} to {high}, or a list or range of them"
    for item in values:
        if not _is_integer(item) or not low <= item <= high:
            raise ValueError(f"{allowed}; got {item!r}")
    return values[0] if scalar and _is_integer(value) else _once(values)


def numbers(value, above: float = 0.0) -> float | list[float]:
    """A factor of finite real numbers above ``above``: one float, or a list."""
    values = _as_values(value, number_range)
    for item in values:
        if not _is_number(item) or not math.isfinite(item) or not item > above:
            raise ValueError(
                f"must be a finite number above {above:g}, or a list or range of "
                f"them; got {item!r}"
            )
    values = [float(item) for item in values]
    return values[0] if _is_number(value) else _once(values)


def choices(value, allowed: Sequence[str]) -> str | list[str]:
    """A factor of names out of ``allowed``: one name, or a list."""
    if isinstance(value, dict):
        raise ValueError(
            f"a name or a list of names is expected, not a table; allowed: "
            f"{', '.join(allowed)}"
        )
    values = _as_values(value, None)
    for item in values:
        if item not in allowed:
            raise ValueError(f"unknown {item!r}; allowed: {', '.join(allowed)}")
    return values[0] if isinstance(value, str) else _once(values)


def as_list(value) -> list:
    """A validated factor as the list of its values."""
    return list(value) if isinstance(value, list) else [value]
