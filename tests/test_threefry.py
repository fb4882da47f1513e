import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap import threefry


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(64, 1), (7, 3)])
def test_draws_equal_jax_random_bit_for_bit(dtype, shape):
    keys = jax.random.split(jax.random.key(11, impl="threefry2x32"), 40)
    data = jnp.arange(40, dtype=jnp.int32) * 7919

    def ours(key, n):
        return threefry.uniform(threefry.fold_in(key, n), shape, dtype, -0.5, 2.0)

    def theirs(key, n):
        key = jax.random.fold_in(key, n)
        return jax.random.uniform(key, shape, dtype, -0.5, 2.0)

    with jax.enable_x64(dtype == "float64"):
        mine = jax.jit(jax.vmap(ours))(keys, data)
        expected = jax.jit(jax.vmap(theirs))(keys, data)

    assert mine.dtype == expected.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(mine, expected)
    drawn = np.asarray(mine)
    assert np.all((drawn >= -0.5) & (drawn < 2.0))


def test_other_key_implementations_fall_back_to_jax():
    key = jax.random.key(5, impl="rbg")

    mine = threefry.uniform(threefry.fold_in(key, 3), (5, 2), jnp.float32, 0.0, 1.0)
    expected = jax.random.uniform(jax.random.fold_in(key, 3), (5, 2), jnp.float32)

    np.testing.assert_array_equal(mine, expected)
