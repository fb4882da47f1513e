"""The Ray backend on a local cluster of this machine (127.0.0.1, two CPUs).

One cluster serves the whole module; every sweep is the tiny one-cell study, so the
workers compile its training loop once and reuse it.
"""

import importlib.util

import pytest

from command import relutrap
from conftest import TINY_SPEC
from relutrap import backends
from relutrap.experiment import parse_spec
from stored import assert_same_runs, stored_runs

# Ray is imported by the cluster fixture only: starting a cluster on the loopback
# address needs a setting made before the first import.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="Ray is not installed"
    ),
]


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray cluster started here, for the module."""
    assert backends.connect_ray(workers=2)
    ray = backends.import_ray()
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The tiny study stored by the local backend."""
    directory = tmp_path_factory.mktemp("local") / "out"
    backends.run_experiment(parse_spec(TINY_SPEC), directory)
    return directory


def test_the_cluster_listens_on_the_loopback_address(cluster):
    assert cluster.startswith("127.0.0.1:")


def test_ray_stores_the_same_results_as_the_local_backend(cluster, local, tmp_path):
    progress = []

    backends.run_experiment(
        parse_spec(TINY_SPEC),
        tmp_path,
        lambda count, label, trained: progress.append((count, trained)),
        backend="ray",
    )

    assert_same_runs(tmp_path, local)
    assert progress == [(4, True), (4, True)]
    assert backends.import_ray().is_initialized()  # the cluster found is kept


@pytest.mark.parametrize("kind", ["exit", "raise"])
def test_a_failed_worker_loses_and_duplicates_no_run(
    cluster, local, tmp_path, monkeypatch, kind
):
    # The first attempt at the chunk of runs 4-7 dies: its worker exits at once
    # (Ray retries the task) or raises (the driver submits the chunk again).
    marker = tmp_path / "failed-once"
    monkeypatch.setenv(backends.FAULT_VARIABLE, f"{kind}:4:{marker}")
    out = tmp_path / "out"

    backends.run_experiment(parse_spec(TINY_SPEC), out, backend="ray")

    assert marker.exists()
    assert sorted(index for _, index in stored_runs(out)) == list(range(8))
    assert_same_runs(out, local)


def test_a_resumed_ray_sweep_trains_only_the_missing_chunk(cluster, local, tmp_path):
    spec = parse_spec(TINY_SPEC)
    backends.run_experiment(spec.model_copy(update={"runs": 4}), tmp_path)
    progress = []

    backends.run_experiment(
        spec,
        tmp_path,
        lambda count, label, trained: progress.append((count, trained)),
        backend="ray",
        extend=True,
    )

    assert progress == [(4, False), (4, True)]
    assert_same_runs(tmp_path, local)


def test_the_command_line_sends_chunks_to_a_given_address(cluster, local, tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'name = "tiny"\nseed = 3\nruns = 8\nchunk_size = 4\n[[parts]]\nname = "w"\n'
        "width = [3]\nsteps = 30\nproblem = { evaluation_size = 64 }\n"
        '[[parts.optimizers]]\nname = "adam"\nlearning_rate = 0.01\n'
    )

    result = relutrap(
        "run",
        spec,
        "--out",
        tmp_path / "out",
        "--backend",
        "ray",
        "--address",
        cluster,
        cache=tmp_path / "cache",
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert "backend ray" in result.stderr
    assert_same_runs(tmp_path / "out", local)
