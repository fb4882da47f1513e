import math

import numpy as np
import pytest

from relutrap.analysis import rates
from relutrap.rates import fit_rate, line_slope, log_survival

WIDTHS = np.array([1, 2, 4, 8, 16])


def test_the_fit_recovers_a_known_slope_from_synthetic_binomial_counts():
    rng = np.random.default_rng(0)
    slope = math.log(5 / 8)  # 1 - P = (5/8)^width: p = 3/8
    trials = np.full(len(WIDTHS), 100_000)
    events = rng.binomial(trials, 1 - np.exp(slope * WIDTHS))

    fit = fit_rate(WIDTHS, events, trials)

    assert fit.slope == pytest.approx(slope, abs=5e-3)
    assert fit.low < slope < fit.high
    assert fit.high - fit.low < 0.02
    assert fit.intercept == pytest.approx(0.0, abs=5e-3)


def test_the_interval_covers_the_true_slope_about_as_often_as_it_says():
    rng = np.random.default_rng(1)
    x = np.array([1, 2, 3, 4])
    slope, intercept = -0.3, -0.1
    trials = np.full(len(x), 200)
    covered = 0
    repeats = 60
    for _ in range(repeats):
        events = rng.binomial(trials, 1 - np.exp(intercept + slope * x))
        fit = fit_rate(x, events, trials)
        covered += fit.low <= slope <= fit.high
    # 95% nominal: 60 repeats give 57 on average; below 50 has probability < 1e-3.
    assert covered >= 50


def test_a_wrong_slope_is_excluded():
    rng = np.random.default_rng(2)
    trials = np.full(len(WIDTHS), 5_000)
    events = rng.binomial(trials, 1 - np.exp(-0.2 * WIDTHS))

    fit = fit_rate(WIDTHS, events, trials)

    assert not fit.low <= -0.25 <= fit.high


def test_fits_that_the_data_do_not_identify_are_none():
    assert fit_rate([4, 4], [1, 2], [10, 10]) is None
    assert fit_rate([1, 2], [10, 10], [10, 10]) is None
    # 1 - P > 0 at the first width and 0 after it: the slope runs off to -inf.
    assert fit_rate([1, 2, 4, 8, 16], [15, 16, 16, 16, 16], [16] * 5) is None
    # ... and to +inf when only the last width has runs without the event.
    assert fit_rate([1, 2, 4], [16, 16, 3], [16] * 3) is None
    no_events = fit_rate([1, 2, 3], [0, 0, 0], [50, 50, 50])
    assert no_events.slope == pytest.approx(0.0, abs=1e-6)


def test_every_small_count_pattern_gives_a_fit_or_none():
    rng = np.random.default_rng(4)
    for _ in range(200):
        trials = rng.integers(1, 8, size=3)
        events = rng.integers(0, trials + 1)
        fit = fit_rate([1, 2, 4], events, trials)
        without = events < trials
        at_one_end = without.sum() == 1 and (without[0] or without[-1])
        if not without.any() or at_one_end:
            assert fit is None
        else:
            assert math.isfinite(fit.slope)
            assert fit.low is None or fit.low <= fit.slope + 1e-9
            assert fit.high is None or fit.slope <= fit.high + 1e-9


def test_theoretical_lines():
    assert line_slope([1, 2, 4], [math.log(0.5) * x for x in (1, 2, 4)]) == (
        pytest.approx(math.log(0.5))
    )
    assert line_slope([1, 2], [0.0, -math.inf]) is None
    assert log_survival(1.0) == -math.inf
    assert math.isnan(log_survival(None))


def _record(width, depth, count, runs, part="w", optimizer="adam", scheme="normal"):
    proportion = {"count": count, "runs": runs}
    p = 3 / 8 if scheme == "normal" else 1 / 8
    return {
        "part": part,
        "optimizer": optimizer,
        "init": scheme,
        "initialization": {"scheme": scheme, "bias": "default"},
        "convention": "book",
        "settings": {},
        "schedule": {"kind": "constant"},
        "learning_rate": 0.01,
        "steps": 10,
        "batch_size": 8,
        "architecture": [1, *(width,) * depth, 1],
        "width": width,
        "depth": depth,
        "some_first_layer_inactive": proportion,
        "certified_nonconvergent": proportion,
        "observed_nonconvergent": {"count": None, "runs": runs},
        "some_certified_inactive": proportion,
        "collapsed": proportion,
        "theory_some_first_layer_inactive": 1 - (1 - p) ** width,
        "theory_some_certified_inactive": 1 - (1 - p) ** width,
        "theory_certified_collapse": p**width,
    }


def test_rates_of_a_study_pair_each_fit_with_the_theoretical_slope():
    rng = np.random.default_rng(3)
    records = [
        _record(width, 1, int(rng.binomial(4000, 1 - (5 / 8) ** width)), 4000)
        for width in (1, 2, 4, 8)
    ]
    records.append(_record(2, 1, 0, 10, optimizer="sgd"))  # one position: no fit

    fits = rates(records)
    by_event = {(fit["axis"], fit["event"]): fit for fit in fits}

    assert {fit["optimizer"] for fit in fits} == {"adam"}
    width_fit = by_event[("width", "some_first_layer_inactive")]
    assert width_fit["positions"] == [1, 2, 4, 8]
    assert width_fit["fixed"] == {"depth": 1}
    assert width_fit["theory_slope"] == pytest.approx(math.log(5 / 8))
    assert width_fit["low"] <= math.log(5 / 8) <= width_fit["high"]
    # The observed verdict is unknown (no optimal risk): no fit for it.
    assert ("width", "observed_nonconvergent") not in by_event
    # Depth 1 only: nothing to fit along the depth.
    assert not any(fit["axis"] == "depth" for fit in fits)


def test_rates_fit_each_initialization_apart_and_name_it():
    records = [
        _record(width, 1, count, 100, scheme=scheme)
        for scheme, counts in (("normal", (40, 60, 80)), ("uniform", (10, 20, 30)))
        for width, count in zip((1, 2, 4), counts)
    ]

    fits = [f for f in rates(records) if f["event"] == "some_first_layer_inactive"]

    assert len(fits) == 2
    assert [fit["positions"] for fit in fits] == [[1, 2, 4], [1, 2, 4]]
    schemes = [fit["held_fixed"]["initialization"]["scheme"] for fit in fits]
    assert schemes == ["normal", "uniform"]
    p = {"normal": 3 / 8, "uniform": 1 / 8}
    for fit, scheme in zip(fits, schemes):
        assert fit["theory_slope"] == pytest.approx(math.log(1 - p[scheme]))
