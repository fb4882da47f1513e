"""Per-cell estimates from stored runs, next to what the theory predicts.

For every cell: the fraction of runs with at least one certified inactive first-layer
neuron at initialization beside its exact probability ``1 - (1 - p)^l1``; the
fractions of certified and observed non-convergent runs and of collapsed runs, each
with an exact (Clopper-Pearson) 95% interval; the number of revived neurons (0 for
the theorem's optimizer class); the median final risk; and how many of the runs
without any certified inactive neuron converged, which separates the mechanism of
the theorem from other ways of failing.  ``premise_holds`` says whether the cell's
optimizer keeps coordinates without gradient fixed in the cell's dtype (see
:func:`relutrap.optimizers.zero_gradient_invariance`); where it does not, the theorem
says nothing about the cell.

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

import functools
import json

import numpy as np
from scipy.stats import binomtest

from relutrap import datasets, optimizers, schedules
from relutrap.cells import Cell
from relutrap.experiment import cells as expand_cells
from relutrap.experiment import parse_spec
from relutrap.store import Store
from relutrap.theory import first_layer_inactivity, some_first_layer_inactivity

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
    return first_layer_inactivity(cell.init, arch, problem.low, problem.high)


def summarize_cell(cell: Cell, stored: dict, runs: list[dict], transform=None) -> dict:
    """The summary record of one cell from its stored row and its runs
    (``transform``: the optimizer of a ``custom:`` cell, if known)."""
    arch = cell.architecture
    p = _first_layer_probability(cell)
    some = some_first_layer_inactivity(p, arch[1])
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
        "learning_rate": cell.learning_rate,
        "steps": cell.steps,
        "batch_size": cell.batch_size,
        "init": cell.init.scheme,
        "target": cell.problem.target.kind if cell.problem.data is None else None,
        "data": None if cell.problem.data is None else cell.problem.data.name(),
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
        "collapsed": proportion(sum(run["collapsed"] for run in runs), n),
        "revived": int(sum(run["revived"] for run in runs)),
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
    }


def summarize(store: Store, custom: dict | None = None) -> list[dict]:
    """One summary record per cell of the stored experiment, in grid order;
    ``custom`` holds the transforms of its ``custom:`` optimizers, by name."""
    spec = parse_spec(store.spec(), "stored spec")
    by_identity = {cell.identity: cell for cell, _ in expand_cells(spec)}
    records = []
    for stored in store.cells():
        cell = by_identity[stored["cell"]]
        runs = store.runs(stored["cell"])
        if runs:
            name = cell.optimizer.removeprefix(optimizers.CUSTOM_PREFIX)
            transform = (custom or {}).get(name) if name != cell.optimizer else None
            records.append(summarize_cell(cell, stored, runs, transform))
    return records


def flatten(record: dict) -> dict:
    """A summary record with nested proportions spread into flat columns."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                flat[f"{key}.{inner}"] = item
        elif isinstance(value, list):
            flat[key] = json.dumps(value)
        else:
            flat[key] = value
    return flat
