"""The Python entry point: run a study and get its per-cell summary."""

from __future__ import annotations

import tempfile
from pathlib import Path

from relutrap.analysis import flatten, rates, summarize
from relutrap.backends import run_experiment
from relutrap.experiment import ExperimentSpec, load_spec, parse_spec, with_runs
from relutrap.store import open_for_reading


def study(
    spec: ExperimentSpec | dict | str | Path | None = None,
    out: str | Path | None = None,
    runs: int | None = None,
    as_frame: bool = False,
    custom: dict | None = None,
):
    """Run a study (resuming what ``out`` already holds) and summarize it per cell.

    Args:
        spec: an :class:`~relutrap.experiment.ExperimentSpec`, spec data as a dict
            (whose data paths are relative to the current directory), a path to a
            TOML spec (data paths relative to it), or ``None`` for the built-in
            default study.
        out: the output directory; a temporary one when ``None``.
        runs: if given, the number of runs of every cell.
        as_frame: return a :class:`pandas.DataFrame` with flat columns instead of a
            list of records.
        custom: optax ``GradientTransformation``s (or
            :class:`relutrap.optimizers.Method`s) by name, for the spec's optimizers
            named ``custom:<name>``.  The name stands for the transform in the
            store: give a different transform a different name.

    Returns:
        one summary record per cell (see :func:`relutrap.analysis.summarize_cell`).

    Raises:
        relutrap.experiment.SpecError: the spec is invalid; nothing was written.
    """
    if isinstance(spec, ExperimentSpec):
        parsed = spec
    elif isinstance(spec, dict):
        parsed = parse_spec(spec)
    else:
        parsed = load_spec(spec)
    if runs is not None:
        parsed = with_runs(parsed, runs)

    if out is None:
        with tempfile.TemporaryDirectory(prefix="relutrap-") as directory:
            return _run_and_summarize(parsed, directory, as_frame, custom)
    return _run_and_summarize(parsed, out, as_frame, custom)


def _run_and_summarize(spec: ExperimentSpec, directory, as_frame: bool, custom):
    run_experiment(spec, directory, custom=custom)
    return summary(directory, as_frame, custom)


def summary(directory: str | Path, as_frame: bool = False, custom: dict | None = None):
    """The per-cell summary of a stored study (``custom`` as in :func:`study`; a
    ``custom:`` cell without its transform has ``premise_holds`` None)."""
    with open_for_reading(directory) as store:
        records = summarize(store, custom)
    if as_frame:
        import pandas as pd

        return pd.DataFrame([flatten(record) for record in records])
    return records


def rate_fits(directory: str | Path, custom: dict | None = None) -> list[dict]:
    """The fits of ``log(1 - P)`` against width and depth of a stored study (see
    :func:`relutrap.analysis.rates`)."""
    return rates(summary(directory, custom=custom))
