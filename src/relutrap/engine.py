"""Vectorized training of many independent runs of one cell.

The runs of a chunk are trained together: their parameters are drawn by a ``vmap``
over run keys, and one compiled ``lax.scan`` over the steps trains them all.  At each
step every run takes a mini-batch from its *batch source*, takes the stochastic
gradient of the mean squared error and applies its optimizer.  The batch source is

* the input law: a fresh mini-batch drawn at every step (the data-driven setting);
* a data set's training set: shuffled mini-batches, epoch after epoch.  Each epoch
  is a permutation of the n training examples drawn from the run's data key and the
  epoch's number, cut into ``n // batch_size`` consecutive batches (the last
  ``n mod batch_size`` examples of each permutation wait for a later epoch).
Along the way the scan records, per run

* the risk at log-spaced checkpoints,
* the first step whose loss was not finite (divergence is recorded, never raised),
* which hidden neurons were ever active on a training input,

and after the last step the census of inactive neurons is taken again (and, for a
data set, the risk on its held-out split).  The result of
a run depends only on ``(seed, cell, run index)`` (see :mod:`relutrap.cells`).

What makes it fast: the gradient is written out by hand (:mod:`relutrap.backprop`),
so every matrix product is a batched product over runs in a layout the CPU's kernels
handle well; the mini-batches are drawn by a plain-array Threefry
(:mod:`relutrap.threefry`) with the same bits as ``jax.random``; and a chunk is
trained in groups of runs sized to the processor's cache (:func:`group_size`), one
group per processor at a time.
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
from relutrap.datasets import load
from relutrap.init import initialize
from relutrap.networks import (
    hidden_widths,
    parameter_count,
    realization,
)
from relutrap.problems import (
    Problem,
    evaluation_inputs,
    evaluation_targets,
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
    "bounded_revived",
)


@dataclass(frozen=True)
class Outcomes:
    """Per-run results of a chunk; every array's first axis is the run.

    Census arrays have shape ``(runs, L)`` and count the inactive neurons of each
    hidden layer; ``revived`` counts neurons certified inactive at initialization that
    were active on some training input or lost their certificate;
    ``bounded_revived`` counts neurons bounded but not certified inactive at
    initialization (proven inactive by interval bounds only) that were active on some
    training input or on some evaluation input at the end.
    ``holdout_risk`` ``(runs,)`` is the final risk on a data set's held-out split;
    ``None`` for other problems or an empty split.
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
    bounded_revived: np.ndarray
    collapsed: np.ndarray
    holdout_risk: np.ndarray | None = None


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
    if problem.data is not None:

        def census(params):
            layers = jax.vmap(lambda p: inactivity.finite_census(p, evaluation))(params)
            return layers, jax.vmap(inactivity.collapsed)(layers.bounded)

        return jax.jit(census)
    cells = inactivity.partition(problem, dtype)

    def census(params):
        layers = jax.vmap(lambda p: inactivity.census(p, problem, evaluation, cells))(
            params
        )
        return layers, jax.vmap(inactivity.collapsed)(layers.bounded)

    return jax.jit(census)


def _batch_source(problem: Problem, arch, batch_size: int, dtype):
    """The map ``(data key, step) -> (inputs (B, d), targets (B,))`` of a problem's
    mini-batches, for steps ``1, 2, ...`` (see the module's docstring)."""
    if problem.data is None:

        def drawn(data_key, step):
            inputs = sample_inputs(
                threefry.fold_in(data_key, step), problem, batch_size, dtype
            )
            return inputs, target_values(problem, arch, inputs).astype(dtype)

        return drawn

    dataset = load(problem.data)
    inputs = jnp.asarray(dataset.train_inputs, dtype)
    targets = jnp.asarray(dataset.train_targets, dtype)
    size = len(targets)
    per_epoch = size // batch_size
    if per_epoch < 1:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {size} training examples"
        )

    def shuffled(data_key, step):
        epoch, position = jnp.divmod(step - 1, per_epoch)
        order = jax.random.permutation(jax.random.fold_in(data_key, epoch), size)
        chosen = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)
        return inputs[chosen], targets[chosen]

    return shuffled


@functools.lru_cache(maxsize=64)
def _compiled_holdout_risk(problem: Problem, dtype):
    """A jitted map from the runs' parameters to their risks on the held-out split."""
    dataset = load(problem.data)
    inputs = jnp.asarray(dataset.holdout_inputs, dtype)
    targets = jnp.asarray(dataset.holdout_targets, dtype)

    def risk(params):
        errors = realization(params, inputs) - targets
        return jnp.mean(errors * errors)

    return jax.jit(jax.vmap(risk))


@functools.lru_cache(maxsize=64)
def _compiled_training(cell: Cell, optimizer=None):
    """A jitted map from initial parameters and data keys to the trained runs."""
    arch = cell.architecture
    dtype = jnp.dtype(cell.dtype)
    problem = cell.problem
    method = cell.method() if optimizer is None else optimizers.as_method(optimizer)
    evaluation = evaluation_inputs(problem, dtype)
    targets_at_evaluation = evaluation_targets(problem, arch, dtype)
    batch = _batch_source(problem, arch, cell.batch_size, dtype)
    sigma = cell.sigma()

    def risk(params):
        errors = realization(params, evaluation, sigma) - targets_at_evaluation
        return jnp.mean(errors * errors)

    def train_one_step(params, state, data_key, step):
        inputs, targets = batch(data_key, step)
        point = params
        if method.lookahead is not None:
            point = _tree_add(params, method.lookahead(state, step))
        value, activity, gradient = loss_activity_gradient(
            point, inputs, targets, sigma
        )
        updates, state = method.update(gradient, state, step, params)
        return _tree_add(params, updates), state, value, activity

    return scanned_training(cell, method, train_one_step, risk)


def scanned_training(cell: Cell, method, train_one_step, risk):
    """Every run of ``cell`` trained at once, as one jitted map from the initial
    parameters and data keys to (final parameters, risks at the checkpoints, ever
    active per hidden neuron, step of divergence or -1).

    ``train_one_step(params, state, data_key, step)`` returns the new parameters and
    optimizer state, the loss and the activity of each hidden neuron on the batch; it
    is mapped over the runs inside one scan over the steps, and ``risk(params)`` is
    recorded at the checkpoints.
    """
    arch = cell.architecture
    dtype = jnp.dtype(cell.dtype)
    checkpoints = checkpoint_steps(cell.steps, cell.checkpoints)
    slot_of_step = np.full(cell.steps + 1, -1, dtype=np.int32)
    slot_of_step[checkpoints] = np.arange(len(checkpoints), dtype=np.int32)
    slot_of_step = jnp.asarray(slot_of_step)
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
    compiled = _compiled_training(dataclasses.replace(cell, part=""), optimizer)
    return outcomes_of_training(
        cell,
        seed,
        run_indices,
        functools.partial(
            _train_in_groups, compiled, group_size(cell, len(run_indices))
        ),
    )


def outcomes_of_training(cell: Cell, seed: int, run_indices, train) -> Outcomes:
    """The outcomes of the runs ``run_indices`` of ``cell`` when
    ``train(params, data_keys)`` trains them, returning what
    :func:`scanned_training`'s map returns: the runs' keys, initial parameters,
    census before and after and the revivals are the same whatever trains them."""
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
    params, risks, ever_active, diverged = train(params, data_keys)
    census_end, _ = census(params)
    holdout_risk = None
    if cell.problem.data is not None and len(load(cell.problem.data).holdout_targets):
        holdout_risk = np.asarray(_compiled_holdout_risk(cell.problem, dtype)(params))

    census_init, census_end, ever_active = jax.device_get(
        (census_init, census_end, ever_active)
    )
    if not cell.has_inactivity:
        census_init, census_end = (
            _no_inactivity(census_init),
            _no_inactivity(census_end),
        )
        collapsed = np.zeros_like(collapsed)
    revived = tuple(
        dead & (active | ~still)
        for dead, active, still in zip(
            census_init.certified, ever_active, census_end.certified
        )
    )
    bounded_revived = tuple(
        bounded & ~certified & (active | ~inactive_at_end)
        for bounded, certified, active, inactive_at_end in zip(
            census_init.bounded, census_init.certified, ever_active, census_end.observed
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
        bounded_revived=_counts(bounded_revived),
        collapsed=np.asarray(collapsed),
        holdout_risk=holdout_risk,
    )


def _no_inactivity(census: inactivity.Census) -> inactivity.Census:
    """The census of a network without inactive neurons (leaky ReLU, softplus):
    their derivatives are positive everywhere, so no neuron is ever inactive."""
    return jax.tree.map(lambda layer: np.zeros_like(layer), census)


GROUP_RUNS = 256
"""The most runs trained by one compiled program at a time (see :func:`group_size`)."""

GROUP_BYTES = 2**17
"""What one layer's activations on a mini-batch may take for a whole group: a
quarter of a typical second-level cache, as several such arrays are live at once,
so that a group's arrays stay there through the steps (the best of 2^16 to 2^20 at
widths 16, 64 and 256 on a 2-core Xeon)."""


def group_size(cell: Cell, runs: int) -> int:
    """How many of ``runs`` runs of ``cell`` one compiled program trains at a time:
    at most :data:`GROUP_RUNS`, few enough that a layer's activations on a
    mini-batch fit in :data:`GROUP_BYTES`, and few enough that every processor
    gets a group."""
    widest = max(cell.architecture[1:-1])
    per_run = cell.batch_size * widest * jnp.dtype(cell.dtype).itemsize
    by_cache = max(1, GROUP_BYTES // per_run)
    by_workers = -(-runs // _workers())
    return max(1, min(GROUP_RUNS, by_cache, by_workers))


def _workers() -> int:
    """The number of processors this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _train_in_groups(train, group, params, data_keys):
    """``train(params, data_keys)`` on groups of ``group`` runs, in parallel.

    Runs are independent, so the chunk is cut into groups (the last one padded with
    copies of the last run, dropped afterwards): one compiled program serves every
    group, a group's arrays stay in the processor's caches through all steps, and
    one thread per processor trains a group at a time.
    """
    runs = data_keys.shape[0]
    if runs <= group:
        return train(params, data_keys)
    padding = -runs % group
    if padding:

        def pad(x):
            return jnp.concatenate([x, jnp.repeat(x[-1:], padding, axis=0)])

        params, data_keys = jax.tree.map(pad, (params, data_keys))
    starts = range(0, runs + padding, group)

    # JAX's 64-bit mode is a setting of the calling thread: carry it over.
    x64 = jax.config.jax_enable_x64

    def train_group(start):
        with jax.enable_x64(x64):
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
    problem = cell.problem
    evaluated = (
        problem.evaluation_size
        if problem.data is None
        else len(load(problem.data).train_targets)
    )
    inputs = cell.batch_size + evaluated
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
        values = evaluation_targets(
            cell.problem, cell.architecture, jnp.dtype(cell.dtype)
        )
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

    On a data set only the second applies.  Its empirical risk stays at or above
    that of the best constant, while some network does strictly better unless the
    mean label is the same at every distinct training input: if
    ``sum_i relu(w . x_i - c) (y_i - mean y)`` vanished for every ``(w, c)``, then
    for a direction ``w`` separating the distinct inputs its second differences in
    ``c`` would make every group's mean label equal to the mean.  So a collapsed run
    is certified never to reach the (unknown) optimal empirical risk.  A dead
    first-layer neuron certifies nothing there: whether ``l1 - k`` live neurons can
    fit the training set as well as ``l1`` is not known.
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
