import pytest

from relutrap import datasets, factors
from relutrap.experiment import cells, parse_spec


def test_a_log2_range_doubles_up_to_its_upper_bound():
    assert factors.integer_range({"from": 1, "to": 64, "scale": "log2"}) == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
    ]
    assert factors.integer_range({"from": 3, "to": 20, "scale": "log2"}) == [3, 6, 12]


def test_a_linear_range_steps_up_to_its_upper_bound():
    assert factors.integer_range({"from": 100, "to": 500, "step": 200}) == [
        100,
        300,
        500,
    ]
    assert factors.integer_range({"from": 2, "to": 2}) == [2]


def test_a_log_range_of_numbers_hits_round_values():
    rates = factors.number_range({"from": 0.001, "to": 0.1, "count": 3, "scale": "log"})

    assert rates == [0.001, 0.01, 0.1]
    assert factors.number_range({"from": 0, "to": 1, "count": 5}) == [
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    ]


@pytest.mark.parametrize(
    "table, words",
    [
        ({"from": 8, "to": 2}, "lower bound 'from' (8) is above upper bound 'to' (2)"),
        ({"from": 1}, "'to' is required"),
        ({"from": 1, "to": 4, "by": 2}, "unknown key(s) ['by']; allowed: from, to"),
        ({"from": 1, "to": 4, "step": 0}, "'step' must be at least 1"),
        ({"from": 0, "to": 4, "scale": "log2"}, "needs 'from' >= 1"),
        ({"from": 1, "to": 8, "scale": "log2", "step": 2}, "linear scale only"),
        ({"from": 1.5, "to": 4}, "'from' must be an integer"),
        ({"from": 1, "to": 10**9}, "more than 10000"),
    ],
)
def test_a_bad_integer_range_says_what_is_wrong(table, words):
    with pytest.raises(ValueError) as raised:
        factors.integer_range(table)

    assert words in str(raised.value)


@pytest.mark.parametrize(
    "table, words",
    [
        ({"from": 0.1, "to": 0.01, "count": 2}, "must be below upper bound"),
        ({"from": 0.1, "to": 1.0}, "'count' is required"),
        ({"from": 0.1, "to": 1.0, "count": 1}, "from 2 to 10000"),
        ({"from": 0.0, "to": 1.0, "count": 3, "scale": "log"}, "needs 'from' > 0"),
        ({"from": 0.1, "to": 1.0, "count": 3, "scale": "log2"}, "linear, log"),
    ],
)
def test_a_bad_number_range_says_what_is_wrong(table, words):
    with pytest.raises(ValueError) as raised:
        factors.number_range(table)

    assert words in str(raised.value)


def test_one_value_stays_one_value_and_lists_stay_lists():
    assert factors.integers(5, 1, 10) == 5
    assert factors.integers([5], 1, 10) == [5]
    assert factors.integers(5, 1, 10, scalar=False) == [5]
    assert factors.numbers(1) == 1.0 and isinstance(factors.numbers(1), float)
    assert factors.numbers([1, 0.5]) == [1.0, 0.5]
    assert factors.choices(["a", "b"], ("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match="got True"):
        factors.integers(True, 0, 10)
    with pytest.raises(ValueError, match="the value 0.1 is given twice"):
        factors.numbers([0.1, 0.01, 0.1])


def test_the_grid_is_the_product_of_every_factor(tiny_spec):
    part = tiny_spec["parts"][0]
    part.update(
        width={"from": 1, "to": 4, "scale": "log2"},
        steps=[10, 20],
        batch_size={"from": 16, "to": 32, "step": 16},
        init={"scheme": ["normal", "he_normal"]},
    )
    part["optimizers"] = [
        {"name": "adam", "learning_rate": {"from": 0.001, "to": 0.1, "count": 3}},
        {"name": "sgd", "learning_rate": 0.1, "steps": 5},
    ]

    expanded = [cell for cell, _ in cells(parse_spec(tiny_spec))]

    # widths 3 x schemes 2 x batch sizes 2 x (adam: steps 2 x rates 3 + sgd: 1)
    assert len(expanded) == 3 * 2 * 2 * (2 * 3 + 1)
    assert len({cell.identity for cell in expanded}) == len(expanded)
    assert {cell.hidden for cell in expanded} == {(1,), (2,), (4,)}
    assert {cell.init.scheme for cell in expanded} == {"normal", "he_normal"}
    assert {cell.batch_size for cell in expanded} == {16, 32}
    assert {(cell.optimizer, cell.steps) for cell in expanded} == {
        ("adam", 10),
        ("adam", 20),
        ("sgd", 5),
    }
    assert {cell.learning_rate for cell in expanded if cell.optimizer == "adam"} == {
        0.001,
        0.0505,
        0.1,
    }


def test_a_spec_with_ranges_dumps_its_values_and_parses_back(tiny_spec):
    tiny_spec["parts"][0]["width"] = {"from": 2, "to": 8, "scale": "log2"}
    tiny_spec["parts"][0]["optimizers"][0]["learning_rate"] = [0.1, 0.01]

    spec = parse_spec(tiny_spec)
    dumped = spec.model_dump(mode="json")

    assert dumped["parts"][0]["width"] == [2, 4, 8]
    assert dumped["parts"][0]["optimizers"][0]["learning_rate"] == [0.1, 0.01]
    assert parse_spec(dumped) == spec


def test_epochs_give_each_batch_size_its_own_step_count():
    data = {
        "name": "data",
        "runs": 2,
        "parts": [
            {
                "name": "d",
                "width": [2],
                "epochs": 2,
                "batch_size": [32, 64],
                "problem": {"data": {"dataset": "diabetes"}},
                "optimizers": [{"name": "sgd", "learning_rate": 0.1}],
            }
        ],
    }

    expanded = [cell for cell, _ in cells(parse_spec(data))]
    size = len(datasets.load(expanded[0].problem.data).train_targets)

    assert {(cell.batch_size, cell.steps) for cell in expanded} == {
        (32, 2 * (size // 32)),
        (64, 2 * (size // 64)),
    }
