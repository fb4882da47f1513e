"""The FLOP count the engine benchmark reports (the benchmark itself is run by hand)."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "engine.py"


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("engine_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_matmul_flops_of_the_standard_architecture(benchmark):
    # forward 2*64*(16 + 256 + 16), weight gradients as many, hidden gradients
    # 2*64*(256 + 16): 36864 + 36864 + 34816.
    assert benchmark.matmul_flops((1, 16, 16, 1), 64) == 108544


def test_matmul_flops_of_a_shallow_network_skip_the_input_gradient(benchmark):
    # (d, l, 1) = (3, 5, 1): products 15 and 5; the output layer's backward
    # product reaches the hidden layer, the first layer's would reach the input.
    assert benchmark.matmul_flops((3, 5, 1), 10) == 2 * 10 * (2 * 20 + 5)
