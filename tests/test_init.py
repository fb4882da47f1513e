import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from relutrap.init import SCHEMES, Initialization, Law, initialize

# Wide enough that the first layer has 200k weights and 100k biases, and the second
# layer 100k weights, each layer with a fan-in of its own.
ARCH = (2, 100_000, 1)
SAME_BIAS_BY_DEFAULT = ("normal", "uniform", "torch_default")


def documented_law(scheme: str, fan_in: int, fan_out: int, scale: float = 1.0):
    """``(kind, parameter)`` of the weight law, from the table of relutrap.init."""
    table = {
        "normal": ("normal", 1.0),
        "uniform": ("uniform", scale),
        "he_normal": ("normal", math.sqrt(2 / fan_in)),
        "he_uniform": ("uniform", math.sqrt(6 / fan_in)),
        "glorot_normal": ("normal", math.sqrt(2 / (fan_in + fan_out))),
        "glorot_uniform": ("uniform", math.sqrt(6 / (fan_in + fan_out))),
        "lecun_normal": ("normal", math.sqrt(1 / fan_in)),
        "torch_default": ("uniform", 1 / math.sqrt(fan_in)),
    }
    return table[scheme]


def assert_follows(sample, kind: str, parameter: float):
    """The sample looks like N(0, parameter^2) or U(-parameter, parameter)."""
    sample = np.asarray(sample, np.float64).ravel()
    n = sample.size
    std = parameter if kind == "normal" else parameter / math.sqrt(3)

    assert abs(sample.mean()) < 5 * std / math.sqrt(n)
    assert abs(sample.std() / std - 1) < 5 / math.sqrt(n / 2)
    if kind == "normal":
        # A uniform law with this std has no mass beyond sqrt(3) std.
        beyond = np.mean(np.abs(sample) > 2 * std)
        assert abs(beyond - 0.0455) < 0.005
    else:
        assert sample.min() >= -parameter and sample.max() <= parameter
        assert sample.min() < -0.999 * parameter and sample.max() > 0.999 * parameter


# The asymmetric scheme draws each neuron's entries jointly: see test_asymmetric.py.
@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "asymmetric"])
def test_weights_and_default_biases_follow_the_documented_laws(scheme):
    init = Initialization(scheme, scale=2.5)
    (w1, b1), (w2, b2) = initialize(jax.random.key(1), ARCH, init)

    assert w1.shape == (2, 100_000) and b1.shape == (100_000,)
    assert w2.shape == (100_000, 1) and b2.shape == (1,)
    assert w1.dtype == b1.dtype == jnp.float32
    assert_follows(w1, *documented_law(scheme, 2, 100_000, 2.5))
    assert_follows(w2, *documented_law(scheme, 100_000, 1, 2.5))
    if scheme in SAME_BIAS_BY_DEFAULT:
        assert_follows(b1, *documented_law(scheme, 2, 100_000, 2.5))
    else:
        assert np.all(np.asarray(b1) == 0) and np.all(np.asarray(b2) == 0)


def test_bias_rules_are_honoured():
    key = jax.random.key(2)

    zero = initialize(key, ARCH, Initialization("normal", bias="zero"))
    constant = initialize(key, ARCH, Initialization("lecun_normal", "constant", -0.25))
    same = initialize(key, ARCH, Initialization("he_normal", bias="same"))

    for _, bias in zero:
        assert np.all(np.asarray(bias) == 0)
    for _, bias in constant:
        assert np.all(np.asarray(bias) == np.float32(-0.25))
    assert_follows(same[0][1], "normal", math.sqrt(2 / 2))
    # The rule changes the biases only: the weights come from the same keys.
    np.testing.assert_array_equal(
        zero[0][0], initialize(key, ARCH, Initialization())[0][0]
    )


def test_initialize_is_a_function_of_its_key():
    init = Initialization("glorot_uniform")
    first = initialize(jax.random.key(5), (3, 4, 2, 1), init)
    again = initialize(jax.random.key(5), (3, 4, 2, 1), init)
    other = initialize(jax.random.key(6), (3, 4, 2, 1), init)

    for (w, b), (w_again, b_again) in zip(first, again):
        np.testing.assert_array_equal(w, w_again)
        np.testing.assert_array_equal(b, b_again)
    assert not np.array_equal(first[0][0], other[0][0])


def test_law_descriptions():
    assert Law("normal", 0.5).describe() == "N(0, 0.5^2)"
    assert Law("uniform", 2.0).describe() == "U(-2, 2)"
    assert Law("constant", -1.5).describe() == "constant -1.5"


def test_initialization_describes_each_layer():
    lines = Initialization("he_normal").describe((1, 2, 1))

    assert lines == [
        "layer 1: weights N(0, 1.41421^2), biases constant 0",
        "layer 2: weights N(0, 1^2), biases constant 0",
    ]
    torch = Initialization("torch_default").describe((4, 3, 1))
    assert torch[0] == "layer 1: weights U(-0.5, 0.5), biases U(-0.5, 0.5)"


@pytest.mark.parametrize("field, value", [("scheme", "xavier"), ("bias", "random")])
def test_unknown_scheme_or_bias_rule_is_refused(field, value):
    with pytest.raises(ValueError, match=value):
        Initialization(**{field: value})
