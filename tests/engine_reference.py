"""The obvious vectorized training, kept as the reference of the fast engine.

The same loop as the engine (:func:`relutrap.engine.scanned_training`: one ``vmap``
over runs inside one ``lax.scan`` over steps, the risk recorded at checkpoints), but
every step draws each run's mini-batch with ``jax.random`` and takes the gradient by
``jax.value_and_grad``, where the engine has its own Threefry and a backward pass
written by hand.  Slow, and obviously right; the tests check that
:func:`relutrap.engine.train_runs` gives the same outcomes.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from relutrap import engine, optimizers
from relutrap.cells import run_key
from relutrap.networks import realization, realization_with_activity
from relutrap.problems import evaluation_inputs, target_values


def _tree_add(left, right):
    return jax.tree.map(jnp.add, left, right)


def _training(cell, optimizer=None):
    arch = cell.architecture
    dtype = jnp.dtype(cell.dtype)
    problem = cell.problem
    method = cell.method() if optimizer is None else optimizers.as_method(optimizer)
    evaluation = evaluation_inputs(problem, dtype)
    evaluation_targets = target_values(problem, arch, evaluation).astype(dtype)

    def risk(params):
        errors = realization(params, evaluation) - evaluation_targets
        return jnp.mean(errors * errors)

    def loss(params, inputs, targets):
        outputs, activity = realization_with_activity(params, inputs)
        errors = outputs - targets
        return jnp.mean(errors * errors), activity

    gradient_of_loss = jax.value_and_grad(loss, has_aux=True)

    def train_one_step(params, state, data_key, step):
        inputs = jax.random.uniform(
            jax.random.fold_in(data_key, step),
            (cell.batch_size, problem.dimension),
            dtype,
            problem.low,
            problem.high,
        )
        targets = target_values(problem, arch, inputs).astype(dtype)
        point = params
        if method.lookahead is not None:
            point = _tree_add(params, method.lookahead(state, step))
        (value, activity), gradient = gradient_of_loss(point, inputs, targets)
        updates, state = method.update(gradient, state, step, params)
        return _tree_add(params, updates), state, value, activity

    return engine.scanned_training(cell, method, train_one_step, risk)


def train_runs(cell, seed, run_indices, optimizer=None) -> engine.Outcomes:
    """The outcomes of the runs ``run_indices`` of ``cell``, trained the obvious way."""
    with jax.enable_x64(cell.dtype == "float64" or jax.config.jax_enable_x64):
        dtype = jnp.dtype(cell.dtype)
        run_indices = np.asarray(run_indices, dtype=np.int64)
        keys = jax.vmap(lambda index: run_key(seed, cell, index))(
            jnp.asarray(run_indices, dtype=jnp.uint32)
        )
        init_keys = jax.vmap(lambda key: jax.random.fold_in(key, 0))(keys)
        data_keys = jax.vmap(lambda key: jax.random.fold_in(key, 1))(keys)

        census = engine._compiled_census(cell.problem, dtype)
        params = engine._compiled_initializer(cell.architecture, cell.init, dtype)(
            init_keys
        )
        census_init, collapsed = census(params)
        anonymous = dataclasses.replace(cell, part="")
        params, risks, ever_active, diverged = _training(anonymous, optimizer)(
            params, data_keys
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
    bounded_revived = tuple(
        bounded & ~certified & (active | ~inactive_at_end)
        for bounded, certified, active, inactive_at_end in zip(
            census_init.bounded, census_init.certified, ever_active, census_end.observed
        )
    )
    risks = np.asarray(risks)
    counts = engine._counts
    return engine.Outcomes(
        run_index=run_indices,
        final_risk=risks[:, -1],
        checkpoint_risk=risks,
        diverged_step=np.asarray(diverged),
        certified_init=counts(census_init.certified),
        bounded_init=counts(census_init.bounded),
        observed_init=counts(census_init.observed),
        certified_end=counts(census_end.certified),
        bounded_end=counts(census_end.bounded),
        observed_end=counts(census_end.observed),
        revived=counts(revived),
        bounded_revived=counts(bounded_revived),
        collapsed=np.asarray(collapsed),
    )
