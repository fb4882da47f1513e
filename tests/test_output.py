"""What the command line prints when its output is not a terminal: whole tables,
plain progress lines, and a note on diverged runs."""

import pytest

from command import relutrap, run_study

SWEEP_TOML = """\
name = "piped"
seed = 1
runs = 4
[[parts]]
name = "w"
width = [1, 2]
steps = 20
init = { scheme = ["normal", "he_normal"] }
problem = { evaluation_size = 64 }
[[parts.optimizers]]
name = "sgd"
learning_rate = [1e6, 0.1]
"""


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """A tiny sweep with diverging runs, run with stdout and stderr piped."""
    out, ran = run_study(tmp_path_factory.mktemp("piped"), SWEEP_TOML)
    assert ran.returncode == 0, ran.stderr
    return out, ran


@pytest.mark.slow
def test_progress_is_plain_lines_without_a_bar(piped):
    _, ran = piped

    assert "━" not in ran.stderr
    assert ran.stderr.count(" runs  ") >= 8  # one line per chunk trained


@pytest.mark.slow
def test_a_piped_summary_cuts_no_number(piped, tmp_path):
    out, _ = piped

    result = relutrap("summary", out, cache=tmp_path, columns=80)

    assert result.returncode == 0, result.stderr
    assert "…" not in result.stdout
    assert "he_normal" in result.stdout


@pytest.mark.slow
def test_diverged_runs_get_a_note(piped, tmp_path):
    out, _ = piped

    result = relutrap("summary", out, cache=tmp_path)

    assert "4 of 4 runs diverged" in " ".join(result.stderr.split())


def test_a_report_into_a_directory_is_refused(tmp_path):
    result = relutrap("report", tmp_path, "--out", tmp_path, cache=tmp_path)

    assert result.returncode == 2
    assert "--out" in result.stderr and "is a directory" in result.stderr
