"""Faults and bad input: killed sweeps, two writers, bad specs on the command line."""

import importlib.util
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from command import relutrap, start_relutrap
from relutrap import backends
from relutrap.cli import _speed, app
from relutrap.experiment import load_spec
from relutrap.store import DATABASE
from stored import assert_same_runs, run_count, stored_runs

TINY_TOML = """\
name = "tiny"
seed = 3
runs = 8
chunk_size = 4
[[parts]]
name = "w"
width = [3]
steps = 30
problem = { evaluation_size = 64 }
[[parts.optimizers]]
name = "adam"
learning_rate = 0.01
"""

# Many small chunks of one cell: a process can be caught between two of them.
LONG_TOML = (
    TINY_TOML.replace("runs = 8", "runs = 24")
    .replace("chunk_size = 4", "chunk_size = 2")
    .replace("steps = 30", "steps = 400")
)


def words(text: str) -> str:
    return " ".join(text.split())


def assert_error_alone(stderr: str) -> None:
    """A refused study prints its error and neither the plan nor a progress line."""
    assert "error:" in stderr
    assert "chunks of up to" not in stderr
    assert re.search(r"\d+/\d+\s+runs", stderr) is None


def output_state(directory: Path) -> dict[str, bytes]:
    """The bytes of every file of an output directory."""
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory) -> Path:
    """An output directory holding the complete tiny study."""
    directory = tmp_path_factory.mktemp("faults")
    spec = directory / "tiny.toml"
    spec.write_text(TINY_TOML)
    backends.run_experiment(load_spec(spec), directory / "out")
    return directory / "out"


BAD_SPECS = [
    # what, replaced text, replacement, words the message must hold
    (
        "unknown field",
        "steps = 30",
        'steps = 30\ncolour = "red"',
        ["field parts.0.colour", "unknown field", "allowed: name, problem"],
    ),
    (
        "wrong type",
        "steps = 30",
        'steps = "many"',
        ["field parts.0.steps", "an integer from 0 to 10000000", "'many'"],
    ),
    (
        "width 0",
        "width = [3]",
        "width = [0]",
        ["field parts.0.width", "an integer from 1 to 100000", "got 0"],
    ),
    (
        "negative steps",
        "steps = 30",
        "steps = -5",
        ["field parts.0.steps", "from 0 to", "got -5"],
    ),
    (
        "empty domain",
        "evaluation_size = 64 }",
        "evaluation_size = 64, domain = [0.5, 0.5] }",
        ["field parts.0.problem", "lower bound 0.5 must be below upper bound 0.5"],
    ),
    (
        "empty list",
        "width = [3]",
        "width = []",
        ["field parts.0.width", "give at least one value"],
    ),
    (
        "lower bound above upper bound",
        "width = [3]",
        "width = { from = 8, to = 2 }",
        ["field parts.0.width", "lower bound 'from' (8) is above upper bound"],
    ),
    (
        "unknown optimizer",
        'name = "adam"',
        'name = "adamw"',
        [
            "field parts.0.optimizers.0.name",
            "allowed: sgd, momentum",
            " adam,",
            " nadam,",
        ],
    ),
    (
        "two parts of one name",
        "learning_rate = 0.01\n",
        'learning_rate = 0.01\n[[parts]]\nname = "w"\nwidth = [2]\n'
        '[[parts.optimizers]]\nname = "sgd"\nlearning_rate = 0.1\n',
        ["field parts: part names must be unique; 'w' appears twice"],
    ),
    (
        "unknown range key",
        "width = [3]",
        "width = { from = 1, to = 8, scale = 2 }",
        ["field parts.0.width", "scale 2 unknown", "allowed: linear, log2"],
    ),
]


@pytest.mark.parametrize(
    "replaced, replacement, expected",
    [case[1:] for case in BAD_SPECS],
    ids=[case[0] for case in BAD_SPECS],
)
def test_a_bad_spec_exits_2_naming_the_field_and_leaves_the_output_alone(
    stored_study, tmp_path, replaced, replacement, expected
):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY_TOML.replace(replaced, replacement, 1))
    before = output_state(stored_study)

    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(stored_study)])

    assert result.exit_code == 2, result.output
    message = words(result.stderr)
    assert message.count("error:") == 1
    for word in expected:
        assert word in message
    assert "Traceback" not in result.output
    assert output_state(stored_study) == before


def test_the_ray_backend_without_ray_exits_2_saying_how_to_install(
    stored_study, monkeypatch
):
    spec = stored_study.parent / "tiny.toml"
    before = output_state(stored_study)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails

    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(stored_study), "--backend", "ray"]
    )

    assert result.exit_code == 2
    assert "pip install 'relutrap[ray]'" in words(result.stderr)
    assert output_state(stored_study) == before


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed"
)
def test_an_address_where_no_cluster_listens_fails_at_once(stored_study, tmp_path):
    spec = stored_study.parent / "tiny.toml"
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"

    started = time.monotonic()
    result = CliRunner().invoke(
        app,
        ["run", str(spec), "--out", str(tmp_path / "out")]
        + ["--backend", "ray", "--address", address],
    )

    assert result.exit_code == 1, result.output
    assert f"cannot reach a Ray cluster at {address}" in words(result.stderr)
    assert time.monotonic() - started < 60
    assert_error_alone(result.stderr)
    assert not (tmp_path / "out").exists()


def test_an_address_without_the_ray_backend_is_refused(stored_study):
    spec = stored_study.parent / "tiny.toml"

    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(stored_study), "--address", "x:1"]
    )

    assert result.exit_code == 2
    assert "--backend ray" in words(result.stderr)


def test_extending_with_a_changed_cell_exits_2_naming_the_field(
    stored_study, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "changed.toml"
    spec.write_text(TINY_TOML.replace("steps = 30", "steps = 40"))
    before = output_state(stored_study)

    result = CliRunner().invoke(
        app, ["run", str(spec), "--out", str(stored_study), "--extend"]
    )

    assert result.exit_code == 2, result.output
    assert "steps (30 -> 40)" in words(result.stderr)
    assert_error_alone(result.stderr)
    assert output_state(stored_study) == before


def test_a_plain_rerun_of_a_changed_cell_names_the_field(
    stored_study, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "changed.toml"
    spec.write_text(TINY_TOML.replace("steps = 30", "steps = 40"))
    before = output_state(stored_study)

    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(stored_study)])

    assert result.exit_code == 2, result.output
    message = words(result.stderr)
    assert "differs in: parts" in message
    assert "steps (30 -> 40)" in message
    assert "--extend cannot add to it either" in message
    assert output_state(stored_study) == before


def test_summary_of_an_unfinished_sweep_counts_the_cells_never_started(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "two.toml"
    spec.write_text(TINY_TOML.replace("width = [3]", "width = [2, 3]"))
    out = tmp_path / "out"
    backends.run_experiment(load_spec(spec), out)
    # What a sweep killed before the second cell leaves: its cell row, no runs.
    with sqlite3.connect(out / DATABASE) as connection:
        (second,) = connection.execute(
            "SELECT cell FROM cells ORDER BY position DESC LIMIT 1"
        ).fetchone()
        connection.execute("DELETE FROM runs WHERE cell = ?", (second,))
    connection.close()

    table = CliRunner().invoke(app, ["summary", str(out)])
    listing = CliRunner().invoke(app, ["summary", str(out), "--format", "json"])

    assert table.exit_code == 0, table.output
    assert "incomplete: 8 of 16 runs stored, 1 cells not started" in words(table.output)
    assert "partial grid" in words(table.output)
    incomplete = json.loads(listing.stdout)["incomplete"]
    assert incomplete["runs_stored"] == 8
    assert incomplete["runs_planned"] == 16
    assert len(incomplete["cells_not_started"]) == 1


def test_an_output_that_is_a_file_exits_2_before_the_plan(stored_study, tmp_path):
    spec = stored_study.parent / "tiny.toml"
    out = tmp_path / "results.txt"
    out.write_text("not a study")

    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out)])

    assert result.exit_code == 2, result.output
    assert f"--out {out} exists and is not a directory" in words(result.stderr)
    assert_error_alone(result.stderr)
    assert out.read_text() == "not a study"


def test_extending_with_a_new_name_keeps_the_runs(stored_study, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    (out / DATABASE).write_bytes((stored_study / DATABASE).read_bytes())
    before = stored_runs(out)
    spec = tmp_path / "renamed.toml"
    spec.write_text(TINY_TOML.replace('name = "tiny"', 'name = "tiny2"'))

    result = CliRunner().invoke(app, ["run", str(spec), "--out", str(out), "--extend"])

    assert result.exit_code == 0, result.output
    assert stored_runs(out) == before


def stored_count(directory: Path) -> int:
    """Stored runs, 0 while the database or its tables do not exist yet."""
    try:
        return run_count(directory)
    except sqlite3.OperationalError:
        return 0


def stop_after_first_chunk(process: subprocess.Popen, out: Path) -> int:
    """Freeze ``process`` (SIGSTOP) as soon as it has stored a chunk; return the
    number of runs stored then."""
    deadline = time.monotonic() + 240
    while stored_count(out) == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no chunk stored within 240 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGSTOP)
    return stored_count(out)


@pytest.fixture(scope="module")
def long_study(tmp_path_factory):
    """(a spec of 12 chunks, an output directory holding its uninterrupted run)."""
    directory = tmp_path_factory.mktemp("long")
    spec = directory / "long.toml"
    spec.write_text(LONG_TOML)
    backends.run_experiment(load_spec(spec), directory / "reference")
    return spec, directory / "reference"


@pytest.mark.slow
def test_a_sweep_killed_midway_resumes_to_the_uninterrupted_result(
    long_study, tmp_path
):
    spec, reference = long_study
    out = tmp_path / "out"
    cache = tmp_path / "cache"

    sweep = start_relutrap("run", spec, "--out", out, cache=cache)
    stored_then = stop_after_first_chunk(sweep, out)
    sweep.send_signal(signal.SIGKILL)
    sweep.communicate()
    interrupted = stored_runs(out)
    resumed = relutrap("run", spec, "--out", out, cache=cache, timeout=300)

    assert sweep.returncode == -signal.SIGKILL
    assert 0 < stored_then < 24 and len(interrupted) < 24
    assert resumed.returncode == 0, resumed.stderr
    stored = len(interrupted)
    assert f"{stored}/24 runs  ({stored} of this cell already stored)" in (
        resumed.stderr
    )
    assert re.search(r"24/24 runs  [\d.,]+/s  0:00:00 left", resumed.stderr)
    assert_same_runs(out, reference)
    # Runs stored before the kill were not trained again: their rows are unchanged.
    after = stored_runs(out)
    assert all(after[key] == row for key, row in interrupted.items())


@pytest.mark.slow
def test_a_terminated_sweep_says_how_to_resume_and_resumes(long_study, tmp_path):
    spec, reference = long_study
    out = tmp_path / "out"
    cache = tmp_path / "cache"

    sweep = start_relutrap("run", spec, "--out", out, cache=cache)
    stop_after_first_chunk(sweep, out)
    sweep.send_signal(signal.SIGTERM)
    sweep.send_signal(signal.SIGCONT)
    _, errors = sweep.communicate(timeout=300)
    resumed = relutrap("run", spec, "--out", out, cache=cache, timeout=300)

    assert sweep.returncode == 128 + signal.SIGTERM
    assert "run the same command again to resume" in words(errors)
    assert "Traceback" not in errors
    assert resumed.returncode == 0, resumed.stderr
    assert_same_runs(out, reference)


@pytest.mark.slow
def test_a_second_writer_is_refused_plainly_and_corrupts_nothing(long_study, tmp_path):
    spec, reference = long_study
    out = tmp_path / "out"
    cache = tmp_path / "cache"

    first = start_relutrap("run", spec, "--out", out, cache=cache)
    try:
        stop_after_first_chunk(first, out)  # it holds the output while frozen
        second = start_relutrap("run", spec, "--out", out, cache=cache)
        _, second_errors = second.communicate(timeout=300)
        meanwhile = relutrap("summary", out, cache=cache, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_errors = first.communicate(timeout=300)

    assert second.returncode == 2
    assert "another relutrap process is writing to" in words(second_errors)
    assert "Traceback" not in second_errors
    assert "another process is writing to it now" in words(meanwhile.stderr)
    assert first.returncode == 0, first_errors
    assert_same_runs(out, reference)
    with sqlite3.connect(out / DATABASE) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()


def test_the_rate_counts_trained_runs_and_gives_the_time_left():
    assert _speed(10, 5.0, 7200) == ("2.0/s", "1:00:00 left")
    assert _speed(30, 10.0, 45) == ("3.0/s", "0:00:15 left")
    assert _speed(0, 3.0, 10) == ("", "")
