"""Vectorized training of many independent runs of one cell.

The runs of a chunk are trained together: their parameters are drawn by a ``vmap``
over run keys, and one compiled ``lax.scan`` over the steps trains them all.  At each
step every run draws its own mini-batch from the input law (the data-driven setting),
takes the stochastic gradient of the mean squared error and applies its optimizer.
Along the way the scan records, per run

* the risk at log-spaced checkpoints,
* the first step whose loss was not finite (divergence is recorded, never raised),
* which hidden neurons were ever active on a training input,

and after the last step the census of inactive neurons is taken again.  The result of
a run depends only on ``(seed, cell, run index)`` (see :mod:`relutrap.cells`).

What makes it fast: the gradient is written out by hand (:mod:`relutrap.backprop`),
so every matrix product is a batched product over runs in a layout the CPU's kernels
handle well; the mini-batches are drawn by a plain-array Threefry
(:mod:`relutrap.threefry`) with the same bits as ``jax.random``; and a chunk is
trained in groups of :data:`GROUP_RUNS` runs, one group per processor at a time.
``tests/engine_reference.py`` keeps the obvious version, which the tests compare
against.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from relutrap import inactivity, optimizers, threefry
from relutrap.backprop import loss_activity_gradient
from relutrap.cells import Cell, run_key
from relutrap.init import initialize
from relutrap.networks import (
    hidden_widths,
    parameter_count,
    realization,
)
from relutrap.problems import (
    evaluation_inputs,
    is_constant,
    optimal_risk,
    sample_inputs,
    target_values,
)


def checkpoint_steps(steps: int, count: int) -> np.ndarray:
    """Step 0 and up to ``count - 1`` log-spaced steps ending at ``steps``."""
    if steps == 0:
        return np.zeros(1, dtype=np.int32)
    spaced = np.geomspace(1, steps, count - 1) if count > 2 else np.array([steps])
    return np.unique(np.concatenate([[0], spaced.round(), [steps]])).astype(np.int32)


CENSUS_FIELDS = (
    "certified_init",
    "bounded_init",
    "observed_init",
    "certified_end",
    "bounded_end",
    "observed_end",
    "revived",
)


@dataclass(frozen=True)
class Outcomes:
    """Per-run results of a chunk; every array's first axis is the run.

    Census arrays have shape ``(runs, L)`` and count the inactive neurons of each
    hidden layer; ``revived`` counts neurons certified inactive at initialization that
    were active on some training input or lost their certificate.
    """

    run_index: np.ndarray
    final_risk: np.ndarray
    checkpoint_risk: np.ndarray
    diverged_step: np.ndarray
    certified_init: np.ndarray
    bounded_init: np.ndarray
    observed_init: np.ndarray
    certified_end: np.ndarray
    bounded_end: np.ndarray
    observed_end: np.ndarray
    revived: np.ndarray
    collapsed: np.ndarray


def _counts(layers) -> np.ndarray:
    return np.stack([np.sum(layer, axis=-1) for layer in layers], axis=-1)


def _tree_add(left, right):
    return jax.tree.map(jnp.add, left, right)


@functools.lru_cache(maxsize=64)
def _compiled_initializer(arch, init, dtype):
    """A jitted map from run keys ``(R,)`` to the runs' initial parameters."""
    return jax.jit(jax.vmap(lambda key: initialize(key, arch, init, dtype)))


@functools.lru_cache(maxsize=64)
def _compiled_census(problem, dtype):
    """A jitted census of the runs' networks, shared by every cell of a problem."""
    evaluation = evaluation_inputs(problem, dtype)
    cells = inactivity.partition(problem, dtype)

    def census(params):
        layers = jax.vmap(lambda p: inactivity.census(p, problem, evaluation, cells))(
            params
        )
        return layers, jax.vmap(inactivity.collapsed)(layers.bounded)

    return jax.jit(census)


@functools.lru_cache(maxsize=64)
def _compiled_training(cell: Cell, optimizer=None):
    """A jitted map from initial parameters and data keys to the trained runs."""
    arch = cell.architecture
    dtype = jnp.dtype(cell.dtype)
    problem = cell.problem
    method = cell.method() if optimizer is None else optimizers.as_method(optimizer)
    evaluation = evaluation_inputs(problem, dtype)
    evaluation_targets = target_values(problem, arch, evaluation).astype(dtype)
    checkpoints = checkpoint_steps(cell.steps, cell.checkpoints)
    slot_of_step = np.full(cell.steps + 1, -1, dtype=np.int32)
    slot_of_step[checkpoints] = np.arange(len(checkpoints), dtype=np.int32)
    slot_of_step = jnp.asarray(slot_of_step)

    def risk(params):
        errors = realization(params, evaluation) - evaluation_targets
        return jnp.mean(errors * errors)

    def train_one_step(params, state, data_key, step):
        inputs = sample_inputs(
            threefry.fold_in(data_key, step), problem, cell.batch_size, dtype
        )
        targets = target_values(problem, arch, inputs).astype(dtype)
        point = params
        if method.lookahead is not None:
            point = _tree_add(params, method.lookahead(state, step))
        value, activity, gradient = loss_activity_gradient(point, inputs, targets)
        updates, state = method.update(gradient, state, step, params)
        return _tree_add(params, updates), state, value, activity

    step_all = jax.vmap(train_one_step, in_axes=(0, 0, 0, None))
    risk_all = jax.vmap(risk)

    def train(params, data_keys):
        runs = data_keys.shape[0]
        state = jax.vmap(method.init)(params)
        risks = jnp.full((runs, len(checkpoints)), jnp.nan, dtype)
        risks = risks.at[:, 0].set(risk_all(params))
        ever_active = tuple(jnp.zeros((runs, width), bool) for width in arch[1:-1])
        diverged = jnp.full((runs,), -1, jnp.int32)

        def body(carry, step):
            params, state, risks, ever_active, diverged = carry
            params, state, value, activity = step_all(params, state, data_keys, step)
            ever_active = tuple(
                jnp.logical_or(seen, now) for seen, now in zip(ever_active, activity)
            )
            diverged = jnp.where((diverged < 0) & ~jnp.isfinite(value), step, diverged)
            slot = slot_of_step[step]
            risks = jax.lax.cond(
                slot >= 0,
                lambda r: r.at[:, slot].set(risk_all(params)),
                lambda r: r,
                risks,
            )
            return (params, state, risks, ever_active, diverged), None

        carry = (params, state, risks, ever_active, diverged)
        steps = jnp.arange(1, cell.steps + 1, dtype=jnp.int32)
        (params, _, risks, ever_active, diverged), _ = jax.lax.scan(body, carry, steps)
        diverged = jnp.where(
            (diverged < 0) & ~jnp.isfinite(risks[:, -1]), cell.steps, diverged
        )
        return params, risks, ever_active, diverged

    return jax.jit(train)


def train_runs(cell: Cell, seed: int, run_indices, optimizer=None) -> Outcomes:
    """Train the runs ``run_indices`` of ``cell`` together and return their outcomes.

    ``optimizer``, a :class:`relutrap.optimizers.Method` or an optax
    ``GradientTransformation``, replaces the cell's named optimizer (whose name then
    only labels the runs and seeds their keys).  A float64 cell switches JAX's 64-bit
    mode on for this call only.
    """
    with jax.enable_x64(cell.dtype == "float64" or jax.config.jax_enable_x64):
        return _train_runs(cell, seed, run_indices, optimizer)


def _train_runs(cell: Cell, seed: int, run_indices, optimizer=None) -> Outcomes:
    dtype = jnp.dtype(cell.dtype)
    run_indices = np.asarray(run_indices, dtype=np.int64)
    keys = jax.vmap(lambda index: run_key(seed, cell, index))(
        jnp.asarray(run_indices, dtype=jnp.uint32)
    )
    init_keys = jax.vmap(lambda key: jax.random.fold_in(key, 0))(keys)
    data_keys = jax.vmap(lambda key: jax.random.fold_in(key, 1))(keys)

    census = _compiled_census(cell.problem, dtype)
    params = _compiled_initializer(cell.architecture, cell.init, dtype)(init_keys)
    census_init, collapsed = census(params)
    anonymous = dataclasses.replace(cell, part="")
    params, risks, ever_active, diverged = _train_in_groups(
        _compiled_training(anonymous, optimizer), params, data_keys
    )
    census_end, _ = census(params)

    census_init, census_end, ever_active = jax.device_get(
        (census_init, census_end, ever_active)
    )
    revived = tuple(
        dead & (active | ~still)
        for dead, active, still in zip(
            census_init.certified, ever_active, census_end.certified
        )
    )
    risks = np.asarray(risks)
    return Outcomes(
        run_index=run_indices,
        final_risk=risks[:, -1],
        checkpoint_risk=risks,
        diverged_step=np.asarray(diverged),
        certified_init=_counts(census_init.certified),
        bounded_init=_counts(census_init.bounded),
        observed_init=_counts(census_init.observed),
        certified_end=_counts(census_end.certified),
        bounded_end=_counts(census_end.bounded),
        observed_end=_counts(census_end.observed),
        revived=_counts(revived),
        collapsed=np.asarray(collapsed),
    )


GROUP_RUNS = 256
"""Runs trained by one compiled program at a time (see :func:`_train_in_groups`)."""


def _workers() -> int:
    """The number of processors this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _train_in_groups(train, params, data_keys):
    """``train(params, data_keys)`` on groups of runs of one size, in parallel.

    Runs are independent, so the chunk is cut into groups of :data:`GROUP_RUNS` runs
    (the last one padded with copies of the last run, dropped afterwards): one
    compiled program serves every group, a group's arrays stay in the processor's
    caches through all steps, and one thread per processor trains a group at a time.
    """
    runs = data_keys.shape[0]
    group = GROUP_RUNS
    if runs <= group:
        return train(params, data_keys)
    padding = -runs % group
    if padding:

        def pad(x):
            return jnp.concatenate([x, jnp.repeat(x[-1:], padding, axis=0)])

        params, data_keys = jax.tree.map(pad, (params, data_keys))
    starts = range(0, runs + padding, group)

    def train_group(start):
        part = jax.tree.map(lambda x: x[start : start + group], (params, data_keys))
        return jax.block_until_ready(train(*part))

    with concurrent.futures.ThreadPoolExecutor(_workers()) as pool:
        trained = list(pool.map(train_group, starts))
    return jax.tree.map(lambda *parts: jnp.concatenate(parts)[:runs], *trained)


def bytes_per_run(cell: Cell) -> int:
    """An estimate of the memory one run of the cell holds while a chunk trains.

    Parameters, gradients and up to three optimizer moments (six copies of the
    parameters), plus four arrays per hidden neuron for every input of a mini-batch
    and of the evaluation set (pre-activations, activations, their gradients or
    interval bounds).
    """
    arch = cell.architecture
    itemsize = jnp.dtype(cell.dtype).itemsize
    inputs = cell.batch_size + cell.problem.evaluation_size
    return itemsize * (
        6 * parameter_count(arch) + 4 * inputs * sum(hidden_widths(arch))
    )


def runs_per_chunk(cell: Cell, largest: int, memory_budget: int) -> int:
    """How many runs of the cell to train at once: at most ``largest``, and few
    enough that their estimated memory stays within ``memory_budget`` bytes."""
    return int(max(1, min(largest, memory_budget // bytes_per_run(cell))))


def target_variance(cell: Cell) -> float:
    """``Var f(X)`` of the target under the input law, by the risk's estimator."""
    with jax.enable_x64(cell.dtype == "float64" or jax.config.jax_enable_x64):
        inputs = evaluation_inputs(cell.problem, jnp.dtype(cell.dtype))
        values = target_values(cell.problem, cell.architecture, inputs)
        return float(np.var(np.asarray(values, dtype=np.float64)))


def certified_nonconvergent(cell: Cell, outcomes: Outcomes) -> np.ndarray:
    """Runs proven never to reach the optimal risk, from their census at init.

    Two certificates:

    * a shallow student of a teacher with m kinks: with fewer than m first-layer
      neurons alive it has fewer than m kink hyperplanes and cannot equal the
      teacher, whose non-zero outgoing weights make each of its m distinct kinks
      visible; its risk stays above 0, the optimal risk;
    * a collapsed network computes a constant forever; for a non-constant target some
      network of the architecture beats the best constant (a single ReLU ridge
      function correlated with the residual, carried through the deeper layers).
    """
    problem = cell.problem
    arch = cell.architecture
    verdict = outcomes.collapsed & (not is_constant(problem))
    if problem.target.kind == "teacher" and len(hidden_widths(arch)) == 1:
        alive = arch[1] - outcomes.certified_init[:, 0]
        if optimal_risk(problem, arch) == 0.0:
            verdict = verdict | (alive < problem.teacher_width(arch))
    return verdict


def observed_nonconvergent(
    cell: Cell, outcomes: Outcomes, variance: float
) -> np.ndarray | None:
    """Runs whose final risk exceeds the optimal risk by more than the tolerance, or
    that diverged; ``None`` where the optimal risk is not known.

    The excess risk is taken relative to ``variance`` (``Var f(X)``), and absolute
    where the target is constant (variance 0).
    """
    optimum = optimal_risk(cell.problem, cell.architecture)
    if optimum is None:
        return None
    scale = variance if variance > 0 else 1.0
    excess = (outcomes.final_risk - optimum) / scale
    return ~(excess <= cell.tolerance) | (outcomes.diverged_step >= 0)
