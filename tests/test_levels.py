import csv
import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from relutrap import levels
from relutrap.cli import app
from relutrap.problems import Problem, Target

TEACHER = Problem(target=Target("teacher", seed=1), evaluation_size=128)
SQUARE = Problem(target=Target("square"), evaluation_size=128)
# sin(4 pi x) on [-1, 1]: its best single neuron has its kink on an evaluation input.
SINE = Problem(target=Target("sin", frequency=2.0), low=-1.0, high=1.0)


@pytest.fixture(scope="module")
def teacher_levels():
    return levels.risk_levels(TEACHER, (1, 3, 1), method="free-knot", starts=6)


@pytest.fixture(scope="module")
def sine_levels():
    return levels.risk_levels(SINE, (1, 3, 1), method="free-knot", starts=8)


def _sine_network(knots, facings):
    """The 1-3-1 network with the given knots, the best coefficients for them, and
    inactive neurons for the rest."""
    x, y = levels.risk_data(SINE, (1, 3, 1))
    knots, facings = np.array(knots), np.array(facings)
    coefficients = levels._least_squares(x[:, 0], y, knots, facings)[1]
    return levels.pad(levels._knot_network(knots, facings, coefficients), 3)


def test_levels_are_nonincreasing_from_the_variance_to_the_optimum(teacher_levels):
    risks = teacher_levels.risks
    _, targets = levels.risk_data(TEACHER, (1, 3, 1))
    assert risks[0] == pytest.approx(np.var(targets), rel=1e-12)
    assert np.all(np.diff(risks) <= 0)
    assert risks[1] > risks[2] > 0
    assert risks[3] == 0.0  # the teacher itself
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


def test_free_knot_finds_the_best_three_neurons_for_a_sine(sine_levels):
    # Training (0.337734) and Nelder-Mead (0.337730) find this optimum; plain
    # random starts of the knots used to stop at 0.359274.
    assert sine_levels.risks[3] <= 0.33773045 + 1e-8
    assert sine_levels.risks[1] == pytest.approx(0.452047058, abs=1e-9)


def test_a_minimizer_with_its_kink_on_an_input_is_verified_as_such(sine_levels):
    x, y = levels.risk_data(SINE, (1, 3, 1))
    for k in range(4):
        check = levels.verify_minimizer(
            SINE, (1, 3, 1), levels.local_minimizer(sine_levels, k), perturbations=500
        )
        assert check.passed, (k, check)
    (weights, bias), _ = sine_levels.levels[1].network
    knot = -bias[0] / weights[0, 0]
    assert np.min(np.abs(x[:, 0] - knot)) < 1e-12  # the kink sits on an input
    check = levels.verify_minimizer(
        SINE, (1, 3, 1), levels.local_minimizer(sine_levels, 1), perturbations=500
    )
    assert (check.criterion, check.kinks) == ("at a kink", 1)
    assert check.one_sided > 0 and check.gradient_norm < 1e-12
    # The gradient with the ReLU's derivative at 0 taken as 0 is far from 0 there.
    plain = levels.shallow_risk_and_gradient(
        levels._flatten(levels.local_minimizer(sine_levels, 1)), x, y, 1, 3
    )[1]
    assert np.linalg.norm(plain) > 1e-4


def test_points_moved_off_a_kinked_minimizer_fail_verification(sine_levels):
    x = levels.risk_data(SINE, (1, 3, 1))[0]
    (weights, bias), _ = sine_levels.levels[1].network
    facing = float(np.sign(weights[0, 0]))
    knot = -bias[0] / weights[0, 0]
    index = int(np.argmin(np.abs(x[:, 0] - knot)))
    for moved_knot, criterion in [
        (x[index + 1, 0], "at a kink"),  # the next input: one side goes down
        (x[index - 3, 0], "at a kink"),
        (knot + 1e-7, "smooth"),  # off the input: the gradient is not 0
    ]:
        moved = _sine_network([moved_knot], [facing])
        check = levels.verify_minimizer(SINE, (1, 3, 1), moved, perturbations=500)
        assert check.criterion == criterion and not check.passed, (moved_knot, check)
        if criterion == "at a kink":
            assert check.one_sided < 0
        else:
            assert check.gradient_norm > 1e-4
    (weights, bias), (outgoing, output_bias) = _sine_network([knot], [facing])
    shifted = ((weights, bias), (outgoing + np.array([[0.05], [0], [0]]), output_bias))
    check = levels.verify_minimizer(SINE, (1, 3, 1), shifted, perturbations=500)
    assert check.criterion == "at a kink" and not check.passed
    assert check.gradient_norm > 1e-4 and check.largest_decrease > 0


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


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--arch", "1,0,1"], "--arch: every hidden width must be at least 1"),
        (["--arch", "65,2,1"], "--arch: the input dimension is at most 64"),
        (["--arch", "1,2,2,1"], "--arch: give d,l1,1 (a shallow architecture)"),
        (
            ["--arch", "1,65,1"],
            "--arch: the free-knot solver computes levels of a first width up to 64",
        ),
        (["--arch", "1,100000,1"], "up to 64, got 100000"),
        (
            ["--arch", "2,17,1"],
            "--arch: the training solver computes levels of a first width up to 16",
        ),
        (["--arch", "1,17,1", "--method", "both"], "the training solver"),
        (["--target", "constant", "--value", "inf"], "--value: "),
        (["--target", "constant", "--value", "nan"], "--value: "),
        (["--starts", "0"], "--starts: must be at least 1, got 0"),
        (["--perturbations", "0"], "--perturbations: must be at least 1, got 0"),
        (["--arch", "2,2,1", "--steps", "0"], "--steps: must be at least 1, got 0"),
        (["--method", "both", "--steps", "0"], "--steps: must be at least 1"),
        (["--seed", "-1"], "--seed: must be at least 0"),
        (["--value", "2"], "--value: does not apply to --target teacher"),
        (["--frequency", "2"], "--frequency: does not apply to --target teacher"),
        (
            ["--target", "square", "--teacher-seed", "3"],
            "--teacher-seed: does not apply to --target square",
        ),
        (
            ["--target", "sin", "--teacher-width", "2"],
            "--teacher-width: does not apply to --target sin",
        ),
        (["--target", "sin", "--frequency", "0"], "--frequency: "),
        (["--teacher-width", "100001"], "--teacher-width: at most 100000"),
        (["--domain", "nan,1"], "--domain: give two finite numbers"),
        (["--domain", "0,1e300"], "--domain: the levels are computed on boxes within"),
    ],
)
def test_cli_levels_names_the_option_at_fault(arguments, message):
    result = CliRunner().invoke(app, ["levels", *arguments])

    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text
    # One option per message.
    named = {word.strip(":,") for word in text.split() if word.startswith("--")}
    assert len(named - {"--target", "--method"}) == 1, text


def test_cli_levels_as_csv_has_a_row_per_level_and_free_knot_takes_no_steps():
    runner = CliRunner()
    arguments = [
        "levels",
        "--arch",
        "1,2,1",
        "--target",
        "square",
        "--evaluation-size",
        "64",
        "--starts",
        "2",
        "--perturbations",
        "50",
        "--steps",
        "0",
    ]
    as_csv = runner.invoke(app, [*arguments, "--format", "csv"])
    as_json = runner.invoke(app, [*arguments, "--format", "json"])

    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    record = json.loads(as_json.stdout)
    assert [row["live"] for row in rows] == ["0", "1", "2"]
    assert [float(row["risk"]) for row in rows] == [
        level["risk"] for level in record["levels"]
    ]
    assert {"method", "hits", "verification.passed", "verification.gradient_norm"} <= (
        set(rows[0])
    )
    assert rows[0]["free_knot"] == ""  # the exact level R_0 has no solver's value


def test_compare_runs_counts_runs_at_and_below_their_level():
    record = {
        "variance": 1.0,
        "risk_method": "grid",
        "levels": [
            {"risk": 1.0, "method": "exact"},
            {"risk": 0.1, "method": "free-knot"},
            {"risk": 0.0, "method": "exact"},
        ],
    }
    runs = [
        {"certified_first_layer": 0, "final_risk": 1e-6},
        {"certified_first_layer": 1, "final_risk": 0.1 + 1e-5},
        {"certified_first_layer": 1, "final_risk": 0.3},
        {"certified_first_layer": 1, "final_risk": 0.05},  # below: a missed level
        {"certified_first_layer": 2, "final_risk": None},  # diverged
    ]
    block = levels.compare_runs(record, runs, tolerance=1e-4)
    rows = {row["inactive"]: row for row in block["by_inactive"]}
    assert rows[0]["bound"] == 0.0 and rows[0]["at_level"] == 1
    assert (rows[1]["level"], rows[1]["runs"], rows[1]["at_level"]) == (1, 3, 1)
    assert rows[1]["below"] == 1 and block["below"] == 1
    assert block["method"] == ["exact", "free-knot", "exact"]
    assert (rows[2]["runs"], rows[2]["at_level"], rows[2]["below"]) == (1, 0, 0)


def test_summary_sets_final_risks_beside_cached_levels(
    tiny_spec, tmp_path, monkeypatch
):
    from relutrap.analysis import summarize
    from relutrap.backends import run_experiment
    from relutrap.experiment import parse_spec
    from relutrap.store import LEVELS, open_for_reading

    tiny_spec["parts"][0]["problem"]["teacher_seed"] = 1
    tiny_spec["parts"].append(
        {**tiny_spec["parts"][0], "name": "leaky", "activation": "leaky_relu"}
    )
    run_experiment(parse_spec(tiny_spec), tmp_path)
    with open_for_reading(tmp_path) as store:
        relu, leaky = summarize(store)
    block = relu["levels"]
    assert leaky["levels"] is None
    assert len(block["risks"]) == 4 and block["risks"][-1] < 1e-20
    assert sum(row["runs"] for row in block["by_inactive"]) == relu["runs"]
    assert block["below"] == 0
    assert (tmp_path / LEVELS).is_file()

    def not_again(*arguments):
        raise AssertionError("levels recomputed")

    monkeypatch.setattr(levels, "summary_levels", not_again)
    with open_for_reading(tmp_path) as store:
        assert summarize(store)[0]["levels"] == block


def test_summaries_compute_levels_only_within_the_solvers_reach():
    from relutrap.levels import within_reach

    assert within_reach((1, 64, 1)) and not within_reach((1, 65, 1))
    assert within_reach((2, 16, 1)) and not within_reach((2, 17, 1))
