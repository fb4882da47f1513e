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

from relutrap import engine, optimizers
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
        anonymous = dataclasses.replace(cell, part="")
        return engine.outcomes_of_training(
            cell, seed, run_indices, _training(anonymous, optimizer)
        )
