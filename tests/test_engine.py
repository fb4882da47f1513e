import dataclasses

import jax
import numpy as np
import pytest

import engine_reference
from relutrap import engine, optimizers
from relutrap.init import Initialization
from relutrap.problems import Problem, Target

SEED = 7
CENSUS = engine.CENSUS_FIELDS


@pytest.fixture(scope="module")
def chunk(make_cell):
    """64 runs of the tiny teacher cell, trained together."""
    return engine.train_runs(make_cell(), SEED, range(64))


def test_checkpoint_steps_are_log_spaced_and_end_at_the_last_step():
    steps = engine.checkpoint_steps(1000, 12)

    assert steps[0] == 0 and steps[-1] == 1000
    assert len(steps) <= 12
    assert np.all(np.diff(steps) > 0)
    np.testing.assert_array_equal(engine.checkpoint_steps(0, 12), [0])


def test_two_checkpoints_are_the_first_and_the_last_step():
    np.testing.assert_array_equal(engine.checkpoint_steps(100, 2), [0, 100])


@pytest.mark.slow
def test_a_run_does_not_depend_on_its_chunk(chunk, make_cell):
    alone = engine.train_runs(make_cell(), SEED, [37])

    assert chunk.final_risk.shape == (64,)
    assert alone.run_index.tolist() == [37]
    np.testing.assert_allclose(alone.final_risk[0], chunk.final_risk[37], rtol=1e-6)
    np.testing.assert_allclose(
        alone.checkpoint_risk[0], chunk.checkpoint_risk[37], rtol=1e-6
    )
    assert alone.diverged_step[0] == chunk.diverged_step[37]
    assert alone.collapsed[0] == chunk.collapsed[37]
    for name in CENSUS:
        np.testing.assert_array_equal(getattr(alone, name)[0], getattr(chunk, name)[37])
    # Different runs really differ.
    assert len(np.unique(chunk.final_risk)) == 64


def test_census_is_nested_and_nothing_revives(chunk):
    assert np.all(chunk.certified_init <= chunk.bounded_init)
    assert np.all(chunk.bounded_init <= chunk.observed_init)
    assert np.all(chunk.certified_end <= chunk.bounded_end)
    assert np.all(chunk.certified_init <= chunk.certified_end)
    assert np.all(chunk.revived == 0)
    assert np.all(chunk.diverged_step == -1)
    assert np.all(np.isfinite(chunk.final_risk))


def test_dead_first_layer_neuron_certifies_nonconvergence(chunk, make_cell):
    cell = make_cell()
    verdict = engine.certified_nonconvergent(cell, chunk)
    observed = engine.observed_nonconvergent(cell, chunk, engine.target_variance(cell))
    some_dead = chunk.certified_init[:, 0] > 0

    np.testing.assert_array_equal(verdict, some_dead)
    assert 0 < some_dead.sum() < 64
    assert np.all(observed[verdict])
    # Against a narrower teacher (2 kinks), one dead neuron of three proves nothing.
    narrow = Problem(evaluation_size=64, target=Target(width=2))
    narrow_verdict = engine.certified_nonconvergent(
        dataclasses.replace(cell, problem=narrow), chunk
    )
    np.testing.assert_array_equal(
        narrow_verdict, (chunk.certified_init[:, 0] >= 2) | chunk.collapsed
    )


def test_fraction_with_a_dead_first_layer_neuron_is_near_the_theory(chunk):
    expected = 1 - (5 / 8) ** 3
    measured = np.mean(chunk.certified_init[:, 0] > 0)

    assert abs(measured - expected) < 4 * np.sqrt(expected * (1 - expected) / 64)


def test_divergence_is_recorded_not_raised(make_cell):
    cell = make_cell(optimizer="sgd", learning_rate=1e6)

    outcomes = engine.train_runs(cell, SEED, range(8))

    assert np.all(outcomes.diverged_step >= 1)
    assert np.all(outcomes.diverged_step <= cell.steps)
    assert not np.any(np.isfinite(outcomes.final_risk))
    variance = engine.target_variance(cell)
    assert np.all(engine.observed_nonconvergent(cell, outcomes, variance))
    # The derivative of the ReLU at a dead neuron is exactly 0, not 0 * NaN.
    assert outcomes.certified_init.sum() > 0
    assert np.all(outcomes.revived == 0)


def test_float64_cell_trains_in_float64(make_cell):
    cell = make_cell(dtype="float64")

    with jax.enable_x64(True):
        outcomes = engine.train_runs(cell, SEED, range(8))

    assert not jax.config.jax_enable_x64
    assert outcomes.final_risk.dtype == np.float64
    assert outcomes.checkpoint_risk.dtype == np.float64
    assert np.all(np.isfinite(outcomes.final_risk))
    assert np.all(outcomes.revived == 0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_no_certified_neuron_revives(name, make_cell):
    cell = make_cell(hidden=(3, 3), optimizer=name, learning_rate=0.05)

    outcomes = engine.train_runs(cell, SEED, range(8))

    assert outcomes.certified_init.shape == (8, 2)
    assert outcomes.certified_init.sum() > 0
    assert np.all(outcomes.revived == 0)
    assert np.all(outcomes.certified_end >= outcomes.certified_init)


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "nesterov", "convention": "torch"},
        {"optimizer": "optax:adamw", "settings": (("weight_decay", 0.1),)},
        {"optimizer": "adam", "schedule": (("final", 0.1), ("kind", "cosine"))},
    ],
    ids=["torch-nesterov", "optax-adamw", "cosine-adam"],
)
def test_conventions_schedules_and_optax_train(changes, make_cell):
    cell = make_cell(learning_rate=0.05, **changes)

    outcomes = engine.train_runs(cell, SEED, range(4))

    assert np.all(np.isfinite(outcomes.final_risk))
    assert np.all(outcomes.final_risk < outcomes.checkpoint_risk[:, 0])


def test_an_optax_transform_trains_a_cell_like_its_name(make_cell):
    import optax

    cell = make_cell(optimizer="optax:adam", learning_rate=0.05)
    by_name = engine.train_runs(cell, SEED, range(4))
    by_transform = engine.train_runs(cell, SEED, range(4), optax.adam(0.05))

    np.testing.assert_array_equal(by_name.final_risk, by_transform.final_risk)


def test_collapsed_runs_are_constant_and_certified_nonconvergent(make_cell):
    # Biases -0.5 and N(0, 1) weights on [0, 1]: a neuron is dead iff its weight is
    # at most 0.5, so about half of the width-2 networks are collapsed.
    problem = Problem(evaluation_size=64, target=Target(kind="square"))
    init = Initialization("normal", "constant", -0.5)
    cell = make_cell(problem=problem, hidden=(2,), init=init)

    outcomes = engine.train_runs(cell, SEED, range(16))
    verdict = engine.certified_nonconvergent(cell, outcomes)
    variance = engine.target_variance(cell)

    assert 0 < outcomes.collapsed.sum() < 16
    np.testing.assert_array_equal(verdict, outcomes.collapsed)
    assert engine.observed_nonconvergent(cell, outcomes, variance) is None
    # A constant network cannot beat the best constant, whose risk is Var f(X).
    collapsed_risk = outcomes.final_risk[outcomes.collapsed]
    assert np.all(collapsed_risk >= variance * (1 - 1e-5))
    np.testing.assert_array_equal(outcomes.bounded_end[outcomes.collapsed], 2)
    # For a constant target the same collapses certify nothing.
    constant = dataclasses.replace(problem, target=Target(kind="constant"))
    constant_cell = dataclasses.replace(cell, problem=constant)
    assert not np.any(engine.certified_nonconvergent(constant_cell, outcomes))


def test_a_constant_target_is_judged_by_its_absolute_risk(make_cell):
    cell = make_cell(problem=Problem(evaluation_size=64, target=Target("constant")))
    outcomes = engine.train_runs(cell, SEED, range(8))
    variance = engine.target_variance(cell)

    observed = engine.observed_nonconvergent(cell, outcomes, variance)

    assert variance == 0
    expected = ~(outcomes.final_risk <= cell.tolerance)
    np.testing.assert_array_equal(observed, expected)
    assert not np.any(engine.certified_nonconvergent(cell, outcomes))


def _assert_same_outcomes(mine, expected, rtol=1e-6):
    np.testing.assert_array_equal(mine.run_index, expected.run_index)
    np.testing.assert_allclose(
        mine.checkpoint_risk, expected.checkpoint_risk, rtol=rtol
    )
    np.testing.assert_array_equal(mine.diverged_step, expected.diverged_step)
    np.testing.assert_array_equal(mine.collapsed, expected.collapsed)
    for name in CENSUS:
        np.testing.assert_array_equal(getattr(mine, name), getattr(expected, name))


@pytest.mark.parametrize(
    "changes",
    [{}, {"hidden": (4, 3), "optimizer": "nesterov"}, {"dtype": "float64"}],
    ids=["shallow-adam", "deep-nesterov", "float64"],
)
def test_fast_engine_equals_the_obvious_one(changes, make_cell):
    cell = make_cell(**changes)

    mine = engine.train_runs(cell, SEED, range(16))
    expected = engine_reference.train_runs(cell, SEED, range(16))

    _assert_same_outcomes(mine, expected)


def test_groups_and_padding_change_no_run(make_cell, monkeypatch):
    cell = make_cell(hidden=(3, 2))
    monkeypatch.setattr(engine, "group_size", lambda cell, runs: runs)
    whole = engine.train_runs(cell, SEED, range(10))

    monkeypatch.setattr(engine, "group_size", lambda cell, runs: 4)
    grouped = engine.train_runs(cell, SEED, range(10))

    _assert_same_outcomes(grouped, whole)
    assert len(np.unique(grouped.final_risk)) == 10


def test_groups_fit_the_cache_and_feed_every_processor(make_cell, monkeypatch):
    monkeypatch.setattr(engine, "_workers", lambda: 2)
    narrow, wide = make_cell(hidden=(2, 2)), make_cell(hidden=(256, 256))
    per_run = wide.batch_size * 256 * 4

    assert engine.group_size(narrow, 10_000) == engine.GROUP_RUNS
    assert engine.group_size(wide, 10_000) == engine.GROUP_BYTES // per_run
    assert engine.group_size(narrow, 9) == 5  # two groups for two processors
    assert engine.group_size(narrow, 1) == 1
