"""The Threefry-2x32 draws of the engine's mini-batches, written out for speed.

Every step of every run draws its mini-batch with ``jax.random.uniform`` under the
key ``jax.random.fold_in(data_key, step)``.  Inside a vectorized training loop JAX
evaluates these draws about ten times slower than the same arithmetic written as plain
array operations, and at small widths they took half of a training step.  This module
computes the same bits from the same keys: :func:`fold_in` and :func:`uniform` equal
``jax.random.fold_in`` and ``jax.random.uniform`` bit for bit (the tests check it) for
threefry keys under JAX's default ``jax_threefry_partitionable`` mode, and fall back
to JAX itself for any other key or mode.

The cipher is Threefry-2x32 with 20 rounds (Salmon, Moraes, Dror and Shaw 2011,
"Parallel random numbers: as easy as 1, 2, 3", SC'11), as in JAX:

* ``fold_in(k, n) = threefry(k, (0, n))``;
* the ``i``-th of ``size`` 32-bit words drawn under ``k`` is ``y0 ^ y1`` with
  ``(y0, y1) = threefry(k, (0, i))``; a 64-bit word is ``y0 * 2^32 + y1``;
* a uniform float on ``[low, high)`` puts the word's top mantissa bits into a float
  of ``[1, 2)``, subtracts 1, scales by ``high - low``, adds ``low`` and clamps at
  ``low``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotate_left(x: jax.Array, distance: int) -> jax.Array:
    return (x << np.uint32(distance)) | (x >> np.uint32(32 - distance))


def hash_pair(key0, key1, count0, count1) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (20 rounds) of the counter ``(count0, count1)`` under the key
    ``(key0, key1)``; all ``uint32`` arrays broadcast against each other."""
    keys = (key0, key1, key0 ^ key1 ^ np.uint32(_PARITY))
    x0 = count0 + keys[0]
    x1 = count1 + keys[1]
    for block in range(5):
        for distance in _ROTATIONS[block % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, distance) ^ x0
        x0 = x0 + keys[(block + 1) % 3]
        x1 = x1 + keys[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def _is_fast(key: jax.Array) -> bool:
    """Whether ``key`` is a typed threefry key drawn in JAX's partitionable mode."""
    return (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        and str(jax.random.key_impl(key)) == "threefry2x32"
        and bool(jax.config.jax_threefry_partitionable)
    )


def fold_in(key: jax.Array, data: jax.Array) -> jax.Array:
    """``jax.random.fold_in(key, data)`` for a typed key of shape ``()``."""
    if not _is_fast(key):
        return jax.random.fold_in(key, data)
    words = jax.random.key_data(key)
    data = jnp.asarray(data).astype(jnp.uint32)
    y0, y1 = hash_pair(words[0], words[1], np.uint32(0), data)
    return jax.random.wrap_key_data(jnp.stack([y0, y1]), impl="threefry2x32")


def _bits(key: jax.Array, shape: tuple[int, ...], width: int) -> jax.Array:
    """``width``-bit random words of ``shape`` (fewer than ``2^32`` of them)."""
    words = jax.random.key_data(key)
    counter = jnp.arange(int(np.prod(shape)), dtype=jnp.uint32).reshape(shape)
    y0, y1 = hash_pair(words[0], words[1], np.uint32(0), counter)
    if width == 32:
        return y0 ^ y1
    return (y0.astype(jnp.uint64) << np.uint64(32)) | y1.astype(jnp.uint64)


def uniform(key: jax.Array, shape, dtype, low: float, high: float) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype, low, high)`` for a typed key of
    shape ``()`` and a float32 or float64 ``dtype``."""
    dtype = jnp.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    if not _is_fast(key) or dtype not in (jnp.float32, jnp.float64):
        return jax.random.uniform(key, shape, dtype, low, high)
    info = jnp.finfo(dtype)
    unsigned = jnp.uint32 if info.bits == 32 else jnp.uint64
    bits = _bits(key, shape, info.bits)

    one = np.array(1.0, dtype).view(unsigned)
    mantissa = (bits >> np.array(info.bits - info.nmant, unsigned)) | one
    floats = jax.lax.bitcast_convert_type(mantissa, dtype) - jnp.asarray(1.0, dtype)
    low = jnp.asarray(low, dtype)
    return jnp.maximum(low, floats * (jnp.asarray(high, dtype) - low) + low)
