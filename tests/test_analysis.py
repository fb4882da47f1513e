import pytest

from relutrap.analysis import flatten, proportion


def test_clopper_pearson_intervals_match_known_values():
    none = proportion(0, 10)
    half = proportion(5, 10)
    every = proportion(10, 10)

    assert none["fraction"] == 0.0 and none["low"] == 0.0
    assert none["high"] == pytest.approx(1 - 0.025**0.1, abs=1e-6)
    assert none["high"] == pytest.approx(0.3085, abs=1e-4)
    assert half["low"] == pytest.approx(0.1871, abs=1e-4)
    assert half["high"] == pytest.approx(0.8129, abs=1e-4)
    assert every["low"] == pytest.approx(0.025**0.1, abs=1e-6)
    assert every["high"] == 1.0
    assert (half["count"], half["runs"], half["fraction"]) == (5, 10, 0.5)


def test_proportion_of_no_runs_is_unknown():
    assert proportion(0, 0) == {
        "count": 0,
        "runs": 0,
        "fraction": None,
        "low": None,
        "high": None,
    }


def test_flatten_spreads_proportions_into_columns():
    record = {"part": "w", "architecture": [1, 2, 1], "collapsed": proportion(1, 4)}

    flat = flatten(record)

    assert flat["part"] == "w"
    assert flat["architecture"] == "[1, 2, 1]"
    assert flat["collapsed.count"] == 1
    assert flat["collapsed.fraction"] == 0.25
    assert "collapsed" not in flat
