import copy
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relutrap import cells as cells_module
from relutrap import optimizers
from relutrap.experiment import (
    SpecError,
    cells,
    chunks,
    load_spec,
    parse_spec,
    with_runs,
)


def with_change(spec: dict, path: tuple, value) -> dict:
    """A copy of ``spec`` with the entry at ``path`` set to ``value`` (tables on the
    way are created where missing); ``spec`` itself is left as it is."""
    changed = copy.deepcopy(spec)
    where = changed
    for key in path[:-1]:
        where = where.setdefault(key, {}) if isinstance(key, str) else where[key]
    where[path[-1]] = value
    return changed


BAD_FIELDS = [
    # path, value, words the message must contain
    (("colour",), "red", ["colour", "unknown field"]),
    (("parts", 0, "colour"), "red", ["parts.0.colour", "unknown field"]),
    (("parts", 0, "width"), "three", ["parts.0.width"]),
    (("runs",), "many", ["runs"]),
    (("parts", 0, "steps"), -1, ["parts.0.steps"]),
    (("parts", 0, "problem", "domain"), [1.0, 1.0], ["parts.0.problem", "domain"]),
    (("parts", 0, "problem", "domain"), [2.0, -1.0], ["domain"]),
    (("parts", 0, "optimizers", 0, "name"), "adamw", ["optimizers.0.name", "adam"]),
    (("parts", 0, "optimizers", 0, "learning_rate"), 0.0, ["learning_rate"]),
    (
        ("parts", 0, "optimizers", 0, "settings"),
        {"momentum": 0.9},
        ["parts.0.optimizers.0", "momentum", "epsilon"],
    ),
    (("parts", 0, "init", "scheme"), "xavier", ["parts.0.init.scheme"]),
    (("parts", 0, "problem", "target"), "cosine", ["parts.0.problem.target"]),
    (("dtype",), "float16", ["dtype"]),
    (
        ("parts", 0, "optimizers", 0, "convention"),
        "keras2",
        ["parts.0.optimizers.0", "convention", "allowed: book, torch", "keras"],
    ),
    (
        ("parts", 0, "optimizers", 0, "schedule"),
        {"kind": "cosine", "factor": 0.5},
        ["parts.0.optimizers.0.schedule", "factor", "final"],
    ),
    (
        ("parts", 0, "optimizers", 0, "schedule"),
        {"kind": "linear"},
        ["parts.0.optimizers.0.schedule.kind", "cosine"],
    ),
    (("parts", 0, "optimizers", 0, "name"), "optax:nothing", ["optax", "nothing"]),
]


@pytest.mark.parametrize("path, value, words", BAD_FIELDS)
def test_bad_field_raises_spec_error_naming_it(tiny_spec, path, value, words):
    with pytest.raises(SpecError) as raised:
        parse_spec(with_change(tiny_spec, path, value), "tiny.toml")

    message = str(raised.value)
    assert message.startswith("tiny.toml: field ")
    for word in words:
        assert word in message


def test_width_zero_is_refused(tiny_spec):
    with pytest.raises(SpecError, match="parts.0"):
        parse_spec(with_change(tiny_spec, ("parts", 0, "width"), [2, 0]))


def test_width_zero_message_names_the_width_field(tiny_spec):
    with pytest.raises(SpecError, match=r"parts\.0\.width"):
        parse_spec(with_change(tiny_spec, ("parts", 0, "width"), [0]))


def test_depth_zero_message_names_the_depth(tiny_spec):
    with pytest.raises(SpecError, match="depth"):
        parse_spec(with_change(tiny_spec, ("parts", 0, "depth"), [0]))


def test_infinite_domain_is_refused(tiny_spec):
    with pytest.raises(SpecError, match="domain"):
        parse_spec(
            with_change(tiny_spec, ("parts", 0, "problem", "domain"), [0, math.inf])
        )


def test_epsilon_zero_is_refused(tiny_spec):
    path = ("parts", 0, "optimizers", 0, "settings")
    with pytest.raises(SpecError, match="epsilon"):
        parse_spec(with_change(tiny_spec, path, {"epsilon": 0.0}))


def test_part_needs_exactly_one_architecture_form(tiny_spec):
    both = with_change(tiny_spec, ("parts", 0, "hidden"), [[2, 2]])
    neither = copy.deepcopy(tiny_spec)
    del neither["parts"][0]["width"]

    for data in (both, neither):
        with pytest.raises(SpecError, match="'width'.*'hidden'"):
            parse_spec(data)


def test_part_names_must_be_unique(tiny_spec):
    tiny_spec["parts"].append(copy.deepcopy(tiny_spec["parts"][0]))

    with pytest.raises(SpecError, match="unique"):
        parse_spec(tiny_spec)


def test_every_bad_field_is_reported_at_once(tiny_spec):
    data = with_change(tiny_spec, ("runs",), 0)
    data = with_change(data, ("parts", 0, "steps"), -5)

    with pytest.raises(SpecError) as raised:
        parse_spec(data)

    assert "field runs" in str(raised.value)
    assert "field parts.0.steps" in str(raised.value)


def test_grid_expands_architectures_times_optimizers(tiny_spec):
    part = tiny_spec["parts"][0]
    part.update(width=[1, 4], depth=[1, 3], runs=5, tolerance=1e-3)
    part["optimizers"].append({"name": "sgd", "learning_rate": 0.1, "steps": 7})

    expanded = cells(parse_spec(tiny_spec))

    assert len(expanded) == 8
    assert {cell.hidden for cell, _ in expanded} == {(1,), (1, 1, 1), (4,), (4, 4, 4)}
    assert all(runs == 5 for _, runs in expanded)
    assert {(cell.optimizer, cell.steps) for cell, _ in expanded} == {
        ("adam", 30),
        ("sgd", 7),
    }
    assert all(cell.tolerance == 1e-3 for cell, _ in expanded)


def test_with_runs_overrides_every_part(tiny_spec):
    tiny_spec["parts"][0]["runs"] = 50

    spec = with_runs(parse_spec(tiny_spec), 3)

    assert [runs for _, runs in cells(spec)] == [3]
    with pytest.raises(SpecError, match="runs"):
        with_runs(spec, 0)


def test_chunks_cover_the_runs_once():
    assert chunks(10, 4) == [range(0, 4), range(4, 8), range(8, 10)]
    assert chunks(3, 256) == [range(0, 3)]


def test_default_spec_expands_to_both_parts_with_nine_book_optimizers():
    spec = load_spec(None)
    expanded = cells(spec)
    # The default study measures the nine methods its published results name.
    nine = set(optimizers.OPTIMIZERS) - {"adadelta", "nadamax"}

    assert [part.name for part in spec.parts] == ["width", "depth"]
    for part in spec.parts:
        in_part = [cell for cell, _ in expanded if cell.part == part.name]
        assert {cell.optimizer for cell in in_part} == nine
        assert {cell.convention for cell in in_part} == {"book"}
        assert len(in_part) == len(part.architectures()) * len(nine)
    assert len({cell.identity for cell, _ in expanded}) == len(expanded)


def test_load_spec_reports_unreadable_files(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")

    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(broken)
    with pytest.raises(SpecError, match="directory"):
        load_spec(tmp_path)


SPEC_PATHS = [
    ("name",),
    ("seed",),
    ("runs",),
    ("chunk_size",),
    ("tolerance",),
    ("dtype",),
    ("parts",),
    ("parts", 0),
    ("parts", 0, "width"),
    ("parts", 0, "depth"),
    ("parts", 0, "hidden"),
    ("parts", 0, "steps"),
    ("parts", 0, "batch_size"),
    ("parts", 0, "problem"),
    ("parts", 0, "problem", "domain"),
    ("parts", 0, "problem", "dimension"),
    ("parts", 0, "init"),
    ("parts", 0, "init", "bias"),
    ("parts", 0, "optimizers"),
    ("parts", 0, "optimizers", 0, "name"),
    ("parts", 0, "optimizers", 0, "learning_rate"),
    ("parts", 0, "optimizers", 0, "settings"),
    ("parts", 0, "optimizers", 0, "steps"),
    ("parts", 0, "init", "scheme"),
]
toml_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats()
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


# with_change copies the fixture's spec, so sharing it between examples is safe.
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(SPEC_PATHS), value=toml_values)
def test_parser_raises_nothing_but_spec_errors(tiny_spec, path, value):
    data = with_change(tiny_spec, path, value)

    try:
        spec = parse_spec(data)
    except SpecError as error:
        assert str(error).startswith(f"spec: field {path[0]}")
    else:
        for cell, runs in cells(spec):
            assert runs >= 1
            assert min(cell.architecture) >= 1


FACTOR_PATHS = [
    ("parts", 0, "width"),
    ("parts", 0, "depth"),
    ("parts", 0, "steps"),
    ("parts", 0, "batch_size"),
    ("parts", 0, "optimizers", 0, "learning_rate"),
    ("parts", 0, "optimizers", 0, "steps"),
]
small_numbers = (
    st.integers(-3, 70)
    | st.floats(-1.0, 100.0)
    | st.sampled_from([math.inf, math.nan, 10**12, True])
)
range_tables = st.dictionaries(
    st.sampled_from(["from", "to", "scale", "step", "count", "by"]),
    small_numbers
    | st.sampled_from(["linear", "log", "log2", "cubic"])
    | st.lists(small_numbers, max_size=2),
    max_size=5,
)
factor_values = (
    small_numbers
    | range_tables
    | st.lists(small_numbers | range_tables, max_size=4)
    | st.text(max_size=4)
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(FACTOR_PATHS), value=factor_values)
def test_factor_fields_raise_nothing_but_spec_errors(tiny_spec, path, value):
    data = with_change(tiny_spec, path, value)

    try:
        spec = parse_spec(data)
    except SpecError as error:
        field = ".".join(str(item) for item in path)
        assert str(error).startswith(f"spec: field {field}")
    else:
        for cell, _ in cells(spec):
            assert min(cell.architecture) >= 1
            assert cell.steps >= 0 and cell.batch_size >= 1
            assert math.isfinite(cell.learning_rate) and cell.learning_rate > 0


def test_a_cell_listed_twice_is_refused():
    data = {
        "parts": [
            {
                "name": "a",
                "width": [2],
                "optimizers": [{"name": "adam", "learning_rate": 0.01}] * 2,
            }
        ]
    }

    with pytest.raises(SpecError, match="appears twice"):
        parse_spec(data)
    data["parts"][0].update(width=[2, 2], optimizers=data["parts"][0]["optimizers"][:1])
    with pytest.raises(SpecError, match=r"parts\.0\.width: the value 2 is given twice"):
        parse_spec(data)


def test_convention_and_schedule_reach_the_cell_and_its_stream(tiny_spec):
    plain = cells(parse_spec(tiny_spec))[0][0]
    optimizer = tiny_spec["parts"][0]["optimizers"][0]
    optimizer.update(convention="torch", schedule={"kind": "cosine", "final": 0.01})
    changed = cells(parse_spec(tiny_spec))[0][0]

    assert plain.convention == "book" and plain.schedule == ()
    assert changed.convention == "torch"
    assert changed.schedule == (("final", 0.01), ("kind", "cosine"))
    assert changed.stream != plain.stream
    # A book cell with a constant rate keeps the identity it had before these
    # fields existed.
    record = plain.as_record()
    del record["convention"], record["schedule"]
    del record["activation"], record["negative_slope"]
    for field in ("shape", "center", "radius"):  # a box problem's, equally
        del record["problem"][field]
    assert plain.identity == cells_module._digest(record)


def test_a_spec_without_the_new_fields_dumps_as_before(tiny_spec):
    dumped = parse_spec(tiny_spec).model_dump(mode="json")
    optimizer = dumped["parts"][0]["optimizers"][0]

    assert set(optimizer) == {"name", "learning_rate", "steps", "settings"}
    assert parse_spec(dumped) == parse_spec(tiny_spec)
    tiny_spec["parts"][0]["optimizers"][0]["schedule"] = {"kind": "step"}
    dumped = parse_spec(tiny_spec).model_dump(mode="json")
    assert parse_spec(dumped) == parse_spec(tiny_spec)


def test_an_optax_optimizer_takes_its_keyword_arguments(tiny_spec):
    tiny_spec["parts"][0]["optimizers"] = [
        {
            "name": "optax:adamw",
            "learning_rate": 0.001,
            "settings": {"weight_decay": 0.1, "nesterov": True},
        }
    ]
    cell = cells(parse_spec(tiny_spec))[0][0]

    assert cell.optimizer == "optax:adamw"
    assert dict(cell.settings) == {"weight_decay": 0.1, "nesterov": True}
    bad = with_change(
        tiny_spec, ("parts", 0, "optimizers", 0, "settings"), {"colour": 1.0}
    )
    with pytest.raises(SpecError, match="colour"):
        parse_spec(bad)


def test_an_optax_setting_of_the_wrong_type_is_refused(tiny_spec):
    bad = with_change(
        tiny_spec,
        ("parts", 0, "optimizers", 0),
        {
            "name": "optax:adamw",
            "learning_rate": 0.01,
            "settings": {"weight_decay": "lots"},
        },
    )

    with pytest.raises(SpecError, match="not accepted by optax.adamw"):
        parse_spec(bad)


def test_a_parameter_of_another_schedule_is_refused(tiny_spec):
    bad = with_change(
        tiny_spec,
        ("parts", 0, "optimizers", 0, "schedule"),
        {"kind": "constant", "final": 0.1},
    )

    with pytest.raises(SpecError, match="final"):
        parse_spec(bad)
