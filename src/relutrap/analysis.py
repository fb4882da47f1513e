"""Per-cell estimates from stored runs, next to what the theory predicts.

For every cell: the fraction of runs with at least one certified inactive first-layer
neuron at initialization beside its exact probability ``1 - (1 - p)^l1``; the
fractions of certified and observed non-convergent runs and of collapsed runs, each
with an exact (Clopper-Pearson) 95% interval; the number of revived neurons (0 for
the theorem's optimizer class); the median final risk; and how many of the runs
without any certified inactive neuron converged, which separates the mechanism of
the theorem from other ways of failing.  For a shallow ReLU cell, ``levels`` sets
the final risks beside the risk levels of its problem (see
:func:`relutrap.levels.compare_runs`), computed once per problem and architecture
and cached in ``levels.json`` beside the study's database.  ``inactivity_premise``
is False for a leaky ReLU or softplus cell: its neurons are never inactive, the
theorem's mechanism does not apply and every certificate counts 0.
``premise_holds`` says whether the cell's optimizer keeps coordinates without
gradient fixed in the cell's dtype (see
:func:`relutrap.optimizers.zero_gradient_invariance`); where it does not, the theorem
says nothing about the cell.  Beside them: the probability that some neuron of the
network is certified inactive and that some layer is entirely certified inactive
(:func:`relutrap.theory.bounds`), measured and in theory, and how many neurons proven
inactive at initialization by interval bounds alone were active later.

:func:`rates` fits ``log(1 - P)`` against the width and against the depth across the
cells of a part (see :mod:`relutrap.rates`) and puts the slope the theory predicts
next to each fitted one.

``reference`` says what the observed verdict compares a final risk with: the
``optimal risk`` where it is known exactly, or, on a data set (whose optimal empirical
risk is not known), the ``best run``: the lowest final risk among the cell's runs.
Relative to the best run, a run is non-convergent when its final risk exceeds the
best one by more than the tolerance times the variance of the training labels.  This
says how far a run stayed from the others, not from the global minimum: every run
may be far from it.  On a data set the certified verdict comes from collapses only
(see :func:`relutrap.engine.certified_nonconvergent`); the census of certified
inactive first-layer neurons is reported, but implies no verdict there.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
from scipy.stats import binomtest

from relutrap import datasets, optimizers, schedules
from relutrap import levels as risk_levels
from relutrap.cells import Cell, distinct_labels
from relutrap.experiment import cells as expand_cells
from relutrap.experiment import parse_spec
from relutrap.rates import METHOD, fit_rate, line_slope, log_survival
from relutrap.store import Store, read_levels, write_levels
from relutrap.theory import (
    bounds_from,
    first_layer_inactivity,
    some_first_layer_inactivity,
)

CONFIDENCE = 0.95


def proportion(successes: int | None, trials: int) -> dict:
    """A fraction with its exact Clopper-Pearson interval; all ``None`` where the
    count is unknown (``successes is None``) or there are no trials."""
    if successes is None or trials == 0:
        return {
            "count": successes,
            "runs": trials,
            "fraction": None,
            "low": None,
            "high": None,
        }
    interval = binomtest(successes, trials).proportion_ci(CONFIDENCE, method="exact")
    return {
        "count": int(successes),
        "runs": int(trials),
        "fraction": successes / trials,
        "low": float(interval.low),
        "high": float(interval.high),
    }


def _median(values: list[float | None]) -> float | None:
    finite = [value for value in values if value is not None]
    return float(np.median(finite)) if finite else None


@functools.lru_cache(maxsize=256)
def premise_holds(cell: Cell, transform=None) -> bool | None:
    """Whether the cell's optimizer (or ``transform``, for a ``custom:`` one) never
    moves a coordinate whose gradients all vanished, in the cell's dtype: the
    premise of the theorem.  ``None`` for a ``custom:`` optimizer not given."""
    if cell.optimizer.startswith(optimizers.CUSTOM_PREFIX):
        if transform is None:
            return None
        return optimizers.zero_gradient_invariance(transform, cell.dtype)
    return optimizers.zero_gradient_invariance(cell.method(), cell.dtype)


def _schedule(cell: Cell) -> dict:
    """The cell's schedule with every parameter, defaults included."""
    given = dict(cell.schedule) or {"kind": "constant"}
    return {**schedules.PARAMETERS[given["kind"]], **given}


def has_levels(cell: Cell) -> bool:
    """Whether the summary compares the cell's runs with risk levels: a shallow
    ReLU network on a box (not a data set, a ball or Gaussian inputs), of a width
    whose levels are within reach (:func:`relutrap.levels.within_reach`)."""
    return (
        len(cell.architecture) == 3
        and cell.has_inactivity
        and cell.problem.data is None
        and cell.problem.shape == "box"
        and risk_levels.within_reach(cell.architecture)
    )


def best_run_verdicts(
    runs: list[dict], tolerance: float, variance: float
) -> tuple[list[bool], float | None]:
    """Observed non-convergence relative to the best run, and the best final risk.

    A run is non-convergent when it diverged or ``(final risk - best) / variance``
    exceeds ``tolerance`` (absolute where the variance is 0); the best is the
    lowest final risk of the runs that did not diverge.
    """
    finite = [
        run["final_risk"]
        for run in runs
        if run["final_risk"] is not None and run["diverged_step"] < 0
    ]
    best = min(finite) if finite else None
    scale = variance if variance > 0 else 1.0
    verdicts = [
        run["diverged_step"] >= 0
        or run["final_risk"] is None
        or not (run["final_risk"] - best) / scale <= tolerance
        for run in runs
    ]
    return verdicts, best


def _first_layer_probability(cell: Cell):
    arch = cell.architecture
    problem = cell.problem
    if problem.data is not None:
        # p depends on the input dimension and the first width only.
        return datasets.first_layer_inactivity(cell.init, arch[:2], problem.data)
    return first_layer_inactivity(cell.init, arch, problem.domain())


def summarize_cell(
    cell: Cell,
    stored: dict,
    runs: list[dict],
    transform=None,
    levels: dict | None = None,
) -> dict:
    """The summary record of one cell from its stored row and its runs
    (``transform``: the optimizer of a ``custom:`` cell, if known; ``levels``: the
    risk levels of its problem and architecture, see :mod:`relutrap.levels`)."""
    arch = cell.architecture
    p = _first_layer_probability(cell)
    if not cell.has_inactivity:
        # No neuron of a leaky ReLU or softplus network is ever inactive.
        p = dataclasses.replace(p, value=0.0, standard_error=0.0)
    some = some_first_layer_inactivity(p, arch[1])
    theory = bounds_from(p, cell.init, arch)
    bounded_only, bounded_revived = _bounded_revivals(runs)
    n = len(runs)
    healthy = [run["certified_any"] == 0 for run in runs]
    variance = stored["target_variance"]
    best = None
    if stored["optimal_risk"] is not None:
        reference = "optimal risk"
        observed = [run["observed_nonconvergent"] == 1 for run in runs]
    elif cell.problem.data is not None:
        reference = "best run"
        observed, best = best_run_verdicts(runs, cell.tolerance, variance)
    else:
        reference, observed = None, None
    observed_known = observed is not None
    converged_healthy = sum(
        1
        for verdict, is_healthy in zip(observed or [], healthy)
        if is_healthy and not verdict
    )
    holdout = [run.get("holdout_risk") for run in runs]
    final_risks = [run["final_risk"] for run in runs]
    median_risk = _median(final_risks)
    return {
        "part": cell.part,
        "cell": cell.identity,
        "architecture": list(arch),
        "width": arch[1],
        "depth": len(arch) - 2,
        "optimizer": cell.optimizer,
        "convention": None if ":" in cell.optimizer else cell.convention,
        "settings": dict(cell.settings),
        "schedule": _schedule(cell),
        "premise_holds": premise_holds(cell, transform),
        "activation": cell.activation,
        "negative_slope": (
            cell.negative_slope if cell.activation == "leaky_relu" else None
        ),
        "inactivity_premise": cell.has_inactivity,
        "learning_rate": cell.learning_rate,
        "steps": cell.steps,
        "batch_size": cell.batch_size,
        "init": cell.init.scheme,
        "initialization": dataclasses.asdict(cell.init),
        "target": cell.problem.target.kind if cell.problem.data is None else None,
        "teacher_width": (
            cell.problem.teacher_width(cell.architecture)
            if cell.problem.data is None and cell.problem.target.kind == "teacher"
            else None
        ),
        "data": None if cell.problem.data is None else cell.problem.data.name(),
        "domain": None
        if cell.problem.data is not None
        else cell.problem.domain().describe(),
        "runs": n,
        "planned_runs": stored["runs"],
        "tolerance": cell.tolerance,
        "optimal_risk": stored["optimal_risk"],
        "reference": reference,
        "best_final_risk": best,
        "target_variance": variance,
        "risk_method": cell.problem.risk_method(),
        "p_first_layer_neuron": p.value,
        "p_method": p.method,
        "p_standard_error": p.standard_error,
        "theory_some_first_layer_inactive": some.value,
        "some_first_layer_inactive": proportion(
            sum(run["certified_first_layer"] > 0 for run in runs), n
        ),
        "certified_nonconvergent": proportion(
            sum(run["certified_nonconvergent"] for run in runs), n
        ),
        "observed_nonconvergent": proportion(
            sum(observed) if observed_known else None, n
        ),
        "some_certified_inactive": proportion(
            sum(run["certified_any"] > 0 for run in runs), n
        ),
        "theory_some_certified_inactive": theory.some_neuron.value,
        "theory_certified_collapse": theory.collapse.value,
        "collapsed": proportion(sum(run["collapsed"] for run in runs), n),
        "revived": int(sum(run["revived"] for run in runs)),
        "bounded_only_init": bounded_only,
        "bounded_revived": bounded_revived,
        "diverged": int(sum(run["diverged_step"] >= 0 for run in runs)),
        "certified_within_tolerance": int(
            sum(
                run["certified_nonconvergent"] == 1 and not verdict
                for run, verdict in zip(runs, observed or [True] * n)
            )
        ),
        "without_certified_inactive": int(sum(healthy)),
        "converged_without_certified_inactive": (
            converged_healthy if observed_known else None
        ),
        "median_final_risk": median_risk,
        "median_relative_risk": (
            median_risk / variance if median_risk is not None and variance > 0 else None
        ),
        "median_holdout_risk": _median(holdout),
        "levels": (
            None
            if levels is None
            else risk_levels.compare_runs(levels, runs, cell.tolerance)
        ),
    }


def _bounded_revivals(runs: list[dict]) -> tuple[int, int | None]:
    """Neurons bounded but not certified inactive at init, summed over the runs, and
    how many of them were active later (``None`` for runs stored without it)."""
    censuses = [json.loads(run["census"]) for run in runs]
    bounded_only = sum(
        int(np.sum(census["bounded_init"]) - np.sum(census["certified_init"]))
        for census in censuses
    )
    if any("bounded_revived" not in census for census in censuses):
        return bounded_only, None
    return bounded_only, int(sum(np.sum(c["bounded_revived"]) for c in censuses))


def summarize(store: Store, custom: dict | None = None) -> list[dict]:
    """One summary record per cell of the stored experiment, in grid order;
    ``custom`` holds the transforms of its ``custom:`` optimizers, by name."""
    spec = parse_spec(store.spec(), "stored spec")
    by_identity = {cell.identity: cell for cell, _ in expand_cells(spec)}
    cached = read_levels(store.directory)
    known = len(cached)
    records = []
    for stored in store.cells():
        cell = by_identity[stored["cell"]]
        runs = store.runs(stored["cell"])
        if runs:
            name = cell.optimizer.removeprefix(optimizers.CUSTOM_PREFIX)
            transform = (custom or {}).get(name) if name != cell.optimizer else None
            levels = None
            if has_levels(cell):
                key = risk_levels.cache_key(cell.problem, cell.architecture)
                if key not in cached:
                    cached[key] = risk_levels.summary_levels(
                        cell.problem, cell.architecture
                    )
                levels = cached[key]
            records.append(summarize_cell(cell, stored, runs, transform, levels))
    if len(cached) > known:
        write_levels(store.directory, cached)
    return records


def completeness(store: Store) -> dict | None:
    """How much of the stored spec's grid holds runs; ``None`` where all of it.

    The expected cells come from the stored spec, so cells a stopped sweep never
    started count too.  Returns ``runs_stored`` and ``runs_planned`` (over every
    expected cell), ``cells_planned``, ``cells_not_started`` (the labels of the
    cells without any run) and ``cells_unfinished`` (those with some runs, fewer than
    planned).
    """
    spec = parse_spec(store.spec(), "stored spec")
    stored, planned = 0, 0
    not_started, unfinished = [], []
    expected = expand_cells(spec)
    labels = distinct_labels(cell for cell, _ in expected)
    for cell, runs in expected:
        count = len(store.stored_runs(cell))
        stored += min(count, runs)
        planned += runs
        if count == 0:
            not_started.append(labels[cell.identity])
        elif count < runs:
            unfinished.append(labels[cell.identity])
    if stored >= planned:
        return None
    return {
        "runs_stored": stored,
        "runs_planned": planned,
        "cells_planned": len(expected),
        "cells_not_started": not_started,
        "cells_unfinished": unfinished,
    }


def flatten(record: dict) -> dict:
    """A summary record with nested proportions spread into flat columns."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict) and any(
            isinstance(item, list | dict) for item in value.values()
        ):
            flat[key] = json.dumps(value)
        elif isinstance(value, dict):
            for inner, item in value.items():
                flat[f"{key}.{inner}"] = item
        elif isinstance(value, list):
            flat[key] = json.dumps(value)
        else:
            flat[key] = value
    return flat


# The events whose rates are fitted along each axis, with the theoretical
# probability each is compared with (None: no theory for the event).
RATE_EVENTS = {
    "width": (
        ("some_first_layer_inactive", "theory_some_first_layer_inactive"),
        ("certified_nonconvergent", "theory_some_first_layer_inactive"),
        ("observed_nonconvergent", "theory_some_first_layer_inactive"),
    ),
    "depth": (
        ("some_certified_inactive", "theory_some_certified_inactive"),
        ("collapsed", "theory_certified_collapse"),
        ("observed_nonconvergent", None),
    ),
}


# Every factor of a cell besides its architecture: a rate fit holds all of them fixed.
HELD_FIXED = (
    "part",
    "optimizer",
    "convention",
    "settings",
    "schedule",
    "learning_rate",
    "steps",
    "batch_size",
    "initialization",
    "activation",
    "negative_slope",
    "target",
    "data",
    "domain",
    "tolerance",
)


def held_fixed(record: dict) -> dict:
    """The factors of a record's cell that a rate fit through it holds fixed."""
    return {name: record.get(name) for name in HELD_FIXED}


def _uniform_width(record: dict) -> int | None:
    hidden = record["architecture"][1:-1]
    return hidden[0] if len(set(hidden)) == 1 else None


def rates(records: list[dict]) -> list[dict]:
    """Fits of ``log(1 - P)`` against the width (at fixed depth) and the depth (at
    fixed width, architectures of equal hidden widths) for every part and optimizer
    with at least two positions, next to the slope of the theoretical
    ``log(1 - P)`` through the same positions.  A fit pools only cells equal in
    every factor but the architecture (``held_fixed``: the part, the
    initialization, the optimizer with its settings, steps and batch size, the
    activation and the problem), so no two cells share a position.

    For the event "some first-layer neuron certified inactive" the theoretical line
    is exact, slope ``log(1 - p)`` (when ``p`` does not depend on the width); for the
    non-convergence events it is the slope of the theorem's lower bound
    ``1 - (1 - p)^l1``; along the depth, of ``1 - prod_k (1 - p_k)^l_k`` and of the
    certified collapse ``1 - prod_k (1 - p_k^l_k)``.
    """
    series: dict[tuple, list[dict]] = {}
    for record in records:
        base = (json.dumps(held_fixed(record), sort_keys=True),)
        series.setdefault(base + ("width", record["depth"]), []).append(record)
        width = _uniform_width(record)
        if width is not None:
            series.setdefault(base + ("depth", width), []).append(record)
    fits = []
    for key, members in series.items():
        axis, fixed = key[-2], key[-1]
        positions = [member[axis] for member in members]
        if len(set(positions)) < 2:
            continue
        for event, theory in RATE_EVENTS[axis]:
            counts = [member[event] for member in members]
            if any(count["count"] is None for count in counts):
                continue
            fit = fit_rate(
                positions,
                [count["count"] for count in counts],
                [count["runs"] for count in counts],
                CONFIDENCE,
            )
            theory_slope = (
                line_slope(positions, [log_survival(m[theory]) for m in members])
                if theory is not None
                else None
            )
            fits.append(
                {
                    "part": members[0]["part"],
                    "optimizer": members[0]["optimizer"],
                    "convention": members[0]["convention"],
                    "learning_rate": members[0]["learning_rate"],
                    "axis": axis,
                    "fixed": {"depth" if axis == "width" else "width": fixed},
                    "held_fixed": held_fixed(members[0]),
                    "positions": positions,
                    "event": event,
                    "slope": None if fit is None else fit.slope,
                    "low": None if fit is None else fit.low,
                    "high": None if fit is None else fit.high,
                    "intercept": None if fit is None else fit.intercept,
                    "theory": theory,
                    "theory_slope": theory_slope,
                    "method": METHOD,
                }
            )
    return fits
