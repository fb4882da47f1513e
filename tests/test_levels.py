import json

import numpy as np
import pytest
from typer.testing import CliRunner

from relutrap import levels
from relutrap.cli import app
from relutrap.problems import Problem, Target

TEACHER = Problem(target=Target("teacher", seed=1), evaluation_size=128)
SQUARE = Problem(target=Target("square"), evaluation_size=128)


@pytest.fixture(scope="module")
def teacher_levels():
    return levels.risk_levels(TEACHER, (1, 3, 1), method="free-knot", starts=6)


def test_levels_are_nonincreasing_from_the_variance_to_the_optimum(teacher_levels):
    risks = teacher_levels.risks
    _, targets = levels.risk_data(TEACHER, (1, 3, 1))
    assert risks[0] == pytest.approx(np.var(targets), rel=1e-12)
    assert np.all(np.diff(risks) <= 0)
    assert risks[1] > risks[2] > 0
    assert risks[3] < 1e-20  # the teacher itself
    assert [level.method for level in teacher_levels.levels] == [
        "exact",
        "free-knot",
        "free-knot",
        "exact",
    ]


def test_square_target_levels_fall_strictly_and_match_a_knot_scan():
    found = levels.risk_levels(SQUARE, (1, 3, 1), method="free-knot", starts=4)
    assert np.all(np.diff(found.risks) < 0)
    x, y = levels.risk_data(SQUARE, (1, 3, 1))
    scanned = min(
        np.mean(levels._least_squares(x[:, 0], y, np.array([t]), np.array([s]))[2] ** 2)
        for t in np.linspace(0, 1, 2001)
        for s in (-1.0, 1.0)
    )
    assert found.risks[1] <= scanned + 1e-12
    assert found.risks[1] >= scanned - 1e-6 * found.variance


def test_constructed_local_minimizers_pass_verification(teacher_levels):
    for k in range(4):
        params = levels.local_minimizer(teacher_levels, k)
        check = levels.verify_minimizer(TEACHER, (1, 3, 1), params, perturbations=500)
        assert check.passed, (k, check)
        assert check.live == k
        assert check.risk == pytest.approx(teacher_levels.levels[k].risk, abs=1e-15)


def test_a_perturbation_away_from_a_local_minimizer_is_detected(teacher_levels):
    (weights, bias), (outgoing, output_bias) = levels.local_minimizer(teacher_levels, 2)
    moved = ((weights, bias), (outgoing + np.array([[0.05], [0], [0]]), output_bias))
    check = levels.verify_minimizer(TEACHER, (1, 3, 1), moved, perturbations=500)
    assert not check.passed
    assert check.gradient_norm > 1e-4
    assert check.largest_decrease > 0


def test_waking_a_padded_neuron_is_detected(teacher_levels):
    (weights, bias), (outgoing, output_bias) = levels.local_minimizer(teacher_levels, 1)
    woken = (
        (weights, np.where(np.arange(3) == 2, 0.5, bias)),
        (outgoing + np.array([[0], [0], [0.3]]), output_bias),
    )
    check = levels.verify_minimizer(TEACHER, (1, 3, 1), woken, perturbations=200)
    assert check.live == 2
    assert not check.passed


def test_verification_needs_a_shallow_architecture(teacher_levels):
    with pytest.raises(ValueError, match="shallow"):
        levels.risk_levels(TEACHER, (1, 3, 3, 1))


@pytest.mark.slow
def test_the_two_solvers_agree_in_one_dimension():
    found = levels.risk_levels(SQUARE, (1, 2, 1), method="both", starts=6, steps=1500)
    for level in found.levels[1:]:
        assert level.free_knot is not None and level.training is not None
        assert level.agreement < 1e-6, level


def test_cli_levels_json_and_table():
    runner = CliRunner()
    arguments = [
        "levels",
        "--arch",
        "1,2,1",
        "--evaluation-size",
        "64",
        "--starts",
        "3",
        "--perturbations",
        "100",
        "--teacher-seed",
        "1",
    ]
    result = runner.invoke(app, [*arguments, "--format", "json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    risks = [row["risk"] for row in record["levels"]]
    assert len(risks) == 3 and risks[0] > risks[1] > risks[2]
    assert all(row["verification"]["passed"] for row in record["levels"])
    table = runner.invoke(app, arguments)
    assert table.exit_code == 0
    assert "Risk levels of 1-2-1" in table.stdout and "verified" in table.stdout


@pytest.mark.parametrize(
    "arguments, option",
    [
        (["--arch", "1,2"], "--arch"),
        (["--arch", "1,x,1"], "--arch"),
        (["--domain", "1,0"], "--domain"),
        (["--target", "cos"], "--target"),
        (["--evaluation-size", "1"], "--evaluation-size"),
        (["--arch", "2,2,1", "--method", "free-knot"], "--method"),
    ],
)
def test_cli_levels_bad_arguments_exit_2_naming_the_option(arguments, option):
    result = CliRunner().invoke(app, ["levels", *arguments])
    assert result.exit_code == 2
    assert option in result.output
