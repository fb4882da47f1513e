"""Experiment specs: validation, expansion into cells, planning into chunks.

A spec is a TOML file (or the same data as a dict).  It names a seed, the runs per
cell and one or more *parts*; each part is a grid whose cells are the product of its
factors: architectures (``width`` x ``depth``, or ``hidden``), initialization
schemes, batch sizes, step counts, and its optimizers each times its learning rates.
A factor is one value, a list, or a range (see :mod:`relutrap.factors`)::

    name = "my-study"
    seed = 0
    runs = 256
    tolerance = 1e-4    # converged when (risk - optimal) / Var f(X) <= this

    [[parts]]
    name = "width"
    width = { from = 1, to = 64, scale = "log2" }   # 1, 2, 4, ..., 64, times
    depth = [1]                 # the depths; or hidden = [[8, 4], [16]]
    steps = 2000                # or a list or range: [1000, 2000]
    batch_size = 64             # or a list or range
    problem = { dimension = 1, domain = [0.0, 1.0], target = "teacher" }
    init = { scheme = "normal" }   # or scheme = ["normal", "he_normal"]
    activation = "relu"         # or leaky_relu (with negative_slope = 0.01), softplus

    [[parts.optimizers]]
    name = "adam"
    learning_rate = 0.01          # or [0.1, 0.01], or { from, to, count, scale }
    settings = { beta = 0.999 }   # optional, the method's other hyperparameters
    convention = "torch"          # optional: book (default), torch, optax, keras, paper
    schedule = { kind = "cosine", final = 0.01 }   # optional; constant by default

    [[parts.optimizers]]
    name = "optax:adamw"          # any optax optimizer; settings are its arguments
    learning_rate = 0.001
    settings = { weight_decay = 0.0001 }

A problem may be a data set (see :mod:`relutrap.datasets`); a path is relative to
the spec file, and training then runs over epochs of the training set::

    [[parts]]
    name = "diabetes"
    width = [4, 16]
    epochs = 20                 # instead of steps: passes over the training set
    batch_size = 32
    problem = { data = { dataset = "diabetes", holdout = 0.2, max_train = 200 } }
    # or: data = { path = "houses.csv", inputs = ["area", "age"], target = "price" }

Every field is checked; a wrong one raises :class:`SpecError` naming it (and, for a
bad data file, its line and column).
"""

from __future__ import annotations

import itertools
import json
import os
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from relutrap import datasets, factors, optimizers, schedules
from relutrap.cells import Cell, distinct_labels, flat_record
from relutrap.init import BIAS_RULES, SCHEMES, Initialization
from relutrap.networks import ACTIVATIONS
from relutrap.problems import SHAPES, TARGETS, Problem, Target

SchemeName = Literal[SCHEMES]
BiasRule = Literal[BIAS_RULES]
TargetName = Literal[TARGETS]

DEFAULT_SPEC = Path(__file__).parent / "data" / "default.toml"

# The largest input dimension of a problem on a box, ball or Gaussian inputs, the
# largest width of a hidden layer and the most hidden layers of an architecture.
LARGEST_DIMENSION = 64
LARGEST_WIDTH = 100_000
LARGEST_DEPTH = 64


class SpecError(ValueError):
    """A spec that cannot be run; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False
    )


Width = Annotated[int, Field(ge=1, le=LARGEST_WIDTH)]


class DataSpec(_Strict):
    """A data set: a file (``path``, with ``inputs`` and ``target``) or a bundled
    one (``dataset``).  ``digest`` is filled in when the data is read; a stored spec
    keeps it, so a study resumes only on the same content."""

    path: str | None = Field(None, min_length=1, description="CSV, .npy or .npz")
    dataset: Literal[datasets.BUNDLED] | None = None
    inputs: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="input columns; all but the target if unset"
    )
    target: str | None = Field(None, min_length=1)
    standardize: bool = True
    holdout: float = Field(0.2, ge=0, lt=1, description="fraction held out")
    split_seed: int = Field(0, ge=0)
    max_train: int | None = Field(None, ge=1, description="most training examples")
    # Filled in when the data is read, never written by hand: left out of the
    # fields that error messages list.
    digest: str | None = Field(None, json_schema_extra={"internal": True})

    @model_validator(mode="before")
    @classmethod
    def _path_from_spec_file(cls, data, info: ValidationInfo):
        base = (info.context or {}).get("base") or os.getcwd()
        if isinstance(data, dict) and isinstance(data.get("path"), str):
            path = os.path.normpath(os.path.join(base, data["path"]))
            data = {**data, "path": path}
        return data

    @model_validator(mode="after")
    def _readable(self):
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give either 'path' (a file) or 'dataset' (bundled)")
        if self.path is not None and self.target is None:
            raise ValueError("target: the target column of a file must be named")
        try:
            loaded = datasets.load(self.source())
        except datasets.DataError as error:
            raise ValueError(str(error)) from None
        if self.digest is None:
            # Frozen: the digest is the one field set after validation.
            object.__setattr__(self, "digest", loaded.digest)
        return self

    def source(self) -> datasets.DataSource:
        return datasets.DataSource(
            path=self.path or "",
            dataset=self.dataset or "",
            inputs=tuple(self.inputs or ()),
            target=self.target or "",
            standardize=self.standardize,
            holdout=self.holdout,
            split_seed=self.split_seed,
            max_train=self.max_train or 0,
            digest=self.digest or "",
        )


class ProblemSpec(_Strict):
    dimension: int = Field(1, ge=1, le=LARGEST_DIMENSION)
    domain: list[float] = Field([0.0, 1.0], min_length=2, max_length=2)
    target: TargetName = "teacher"
    teacher_width: int = Field(0, ge=0, description="0: the student's first width")
    teacher_seed: int = Field(0, ge=0)
    value: float = Field(1.0, description="value of a constant target")
    frequency: float = Field(1.0, gt=0, description="cycles per unit of a sin target")
    evaluation_size: int = Field(1024, ge=2, le=1_000_000)
    shape: Literal[SHAPES] = Field(
        "box", description="box: uniform on domain^d; ball; gaussian"
    )
    center: list[float] = Field(
        [0.0],
        min_length=1,
        max_length=LARGEST_DIMENSION,
        description="ball or gaussian center",
    )
    radius: float = Field(
        1.0, gt=0, description="ball radius, or gaussian standard deviation"
    )
    data: DataSpec | None = None

    @model_validator(mode="after")
    def _data_alone(self):
        if self.data is not None:
            unused = sorted(self.model_fields_set - {"data"})
            if unused:
                raise ValueError(
                    f"{unused} not used with a data set: its columns give the inputs "
                    "and the target"
                )
        return self

    @model_validator(mode="after")
    def _domain_not_empty(self):
        low, high = self.domain
        if not low < high:
            raise ValueError(
                f"domain: lower bound {low} must be below upper bound {high}"
            )
        if self.shape == "box":
            given = sorted({"center", "radius"} & self.model_fields_set)
            if given:
                raise ValueError(f"{', '.join(given)}: only for a ball or gaussian")
        elif "domain" in self.model_fields_set:
            raise ValueError(
                f"domain: only for a box; a {self.shape} has center and radius"
            )
        if len(self.center) not in (1, self.dimension):
            raise ValueError(
                f"center: {len(self.center)} coordinates; give 1 or {self.dimension}"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_unused(self, handler):
        # A box without a data set dumps as before data sets and the other shapes
        # existed, so that stored studies keep their spec and resume; the other
        # shapes dump without the box, a data set alone.
        data = handler(self)
        if self.data is not None:
            return {"data": data["data"]}
        data.pop("data", None)
        unused = ("shape", "center", "radius") if self.shape == "box" else ("domain",)
        for field in unused:
            data.pop(field, None)
        return data

    def build(self) -> Problem:
        if self.data is not None:
            source = self.data.source()
            dimension = len(datasets.load(source).columns)
            return Problem(dimension=dimension, data=source)
        target = Target(
            kind=self.target,
            width=self.teacher_width,
            seed=self.teacher_seed,
            value=self.value,
            frequency=self.frequency,
        )
        low, high = self.domain
        return Problem(
            self.dimension,
            low,
            high,
            target,
            self.evaluation_size,
            shape=self.shape,
            center=tuple(self.center),
            radius=self.radius,
        )


class InitSpec(_Strict):
    scheme: SchemeName | list[SchemeName] = "normal"
    bias: BiasRule = "default"
    value: float = Field(0.0, description="bias of the 'constant' rule")
    scale: float = Field(1.0, gt=0, description="half-width of the 'uniform' scheme")

    @field_validator("scheme", mode="before")
    @classmethod
    def _scheme_factor(cls, scheme):
        return factors.choices(scheme, SCHEMES)

    def build(self) -> list[Initialization]:
        """One initialization per scheme of the factor."""
        return [
            Initialization(scheme, self.bias, self.value, self.scale)
            for scheme in factors.as_list(self.scheme)
        ]

    @model_validator(mode="after")
    def _asymmetric_bias(self):
        if "asymmetric" in factors.as_list(self.scheme) and self.bias != "default":
            raise ValueError("bias: the asymmetric scheme draws the biases itself")
        return self


class ScheduleSpec(_Strict):
    kind: Literal[schedules.KINDS] = "constant"
    factor: float | None = Field(None, gt=0, description="step: rate multiplier")
    every: int | None = Field(None, ge=1, description="step: steps between changes")
    decay: float | None = Field(None, ge=0, description="inverse_time: 1 / (1 + d n)")
    final: float | None = Field(None, ge=0, description="cosine: the last factor")

    @model_validator(mode="after")
    def _parameters_of_kind(self):
        allowed = schedules.PARAMETERS[self.kind]
        given = {key for key, value in self if value is not None and key != "kind"}
        unknown = sorted(given - set(allowed))
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)} not a parameter of the {self.kind} schedule; "
                f"allowed: {', '.join(sorted(allowed)) or 'none'}"
            )
        return self

    def as_items(self) -> tuple[tuple[str, float | int | str], ...]:
        """The schedule as sorted ``(name, value)`` pairs; empty when constant."""
        if self.kind == "constant":
            return ()
        given = {key: value for key, value in self if value is not None}
        return tuple(sorted(given.items()))


class OptimizerSpec(_Strict):
    name: str = Field(min_length=1)
    learning_rate: float | list[float]
    steps: int | list[int] | None = Field(None, description="overrides the part's")
    settings: dict[str, float | bool | str] = {}
    convention: str = "book"
    schedule: ScheduleSpec = ScheduleSpec()

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _rate_factor(cls, rate):
        return factors.numbers(rate, above=0.0)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_factor(cls, steps):
        return None if steps is None else factors.integers(steps, 0, 10_000_000)

    def learning_rates(self) -> list[float]:
        return factors.as_list(self.learning_rate)

    @field_validator("name")
    @classmethod
    def _known_name(cls, name):
        if name not in optimizers.OPTIMIZERS and not name.startswith(
            (optimizers.OPTAX_PREFIX, optimizers.CUSTOM_PREFIX)
        ):
            raise ValueError(
                f"unknown optimizer {name!r}; allowed: "
                f"{', '.join(optimizers.OPTIMIZERS)}"
                f", {optimizers.OPTAX_PREFIX}<name of an optax optimizer> or "
                f"{optimizers.CUSTOM_PREFIX}<name of a transform given from Python>"
            )
        return name

    @model_validator(mode="after")
    def _known_settings(self):
        if self.name.startswith(optimizers.OPTAX_PREFIX):
            return self._optax_settings()
        if self.name.startswith(optimizers.CUSTOM_PREFIX):
            if self.settings or self.convention != "book":
                raise ValueError(
                    f"{self.name}: a transform given from Python takes no settings "
                    "and no convention"
                )
            return self
        if self.convention not in optimizers.conventions(self.name):
            raise ValueError(
                f"convention: {self.convention!r} unknown for {self.name}; "
                f"allowed: {', '.join(optimizers.conventions(self.name))}"
            )
        allowed = optimizers.hyperparameters(self.name, self.convention)
        unknown = sorted(set(self.settings) - set(allowed))
        if unknown:
            raise ValueError(
                f"settings: unknown for {self.name}: {', '.join(unknown)}; "
                + (
                    f"allowed: {', '.join(sorted(allowed))}"
                    if allowed
                    else f"{self.name} takes no settings"
                )
            )
        for name, value in self.settings.items():
            if not isinstance(value, float | int) or isinstance(value, bool):
                raise ValueError(f"settings.{name}: must be a number, got {value!r}")
            if name == "epsilon" and not value > 0:
                raise ValueError(f"settings.epsilon: must be > 0, got {value}")
            if name in ("alpha", "beta", "rho") and not 0 <= value < 1:
                raise ValueError(f"settings.{name}: must be in [0, 1), got {value}")
        return self

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler):
        # A book method at a constant rate dumps as before these fields existed, so
        # that stored studies keep their spec and resume.
        data = handler(self)
        if self.convention == "book":
            data.pop("convention", None)
        if self.schedule.kind == "constant":
            data.pop("schedule", None)
        return data

    def _optax_settings(self):
        alias = self.name.removeprefix(optimizers.OPTAX_PREFIX)
        try:
            factory = optimizers.optax_factory(self.name)
        except ValueError as error:
            raise ValueError(f"name: {error}") from None
        if self.convention != "book":
            raise ValueError(
                f"convention: an optax optimizer has none, got {self.convention!r}"
            )
        try:
            transform = factory(learning_rate=self.learning_rates()[0], **self.settings)
            probe = {"w": jnp.zeros(2)}
            with jax.numpy_dtype_promotion("standard"):  # optax relies on it
                transform.update(probe, transform.init(probe), probe)
        except Exception as error:  # optax raises whatever its arguments provoke
            raise ValueError(
                f"settings: not accepted by optax.{alias}: {error}"
            ) from None
        return self


class PartSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    problem: ProblemSpec = ProblemSpec()
    init: InitSpec = InitSpec()
    width: list[Width] | None = None
    depth: list[Annotated[int, Field(ge=1, le=LARGEST_DEPTH)]] = [1]
    hidden: (
        list[Annotated[list[Width], Field(min_length=1, max_length=LARGEST_DEPTH)]]
        | None
    ) = Field(None, min_length=1)
    optimizers: list[OptimizerSpec] = Field(min_length=1)
    steps: int | list[int] = 1000
    epochs: int | None = Field(
        None, ge=1, le=1_000_000, description="data sets: passes instead of steps"
    )
    batch_size: int | list[int] = 64
    runs: int | None = Field(None, ge=1, description="overrides the experiment's runs")
    tolerance: float | None = Field(None, gt=0)
    activation: Literal[ACTIVATIONS] = "relu"
    negative_slope: float = Field(0.01, gt=0, lt=1, description="of leaky_relu")

    @field_validator("width", mode="before")
    @classmethod
    def _width_factor(cls, width):
        return (
            None if width is None else factors.integers(width, 1, LARGEST_WIDTH, False)
        )

    @field_validator("depth", mode="before")
    @classmethod
    def _depth_factor(cls, depth):
        return factors.integers(depth, 1, LARGEST_DEPTH, scalar=False)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_factor(cls, steps):
        return factors.integers(steps, 0, 10_000_000)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size_factor(cls, batch_size):
        return factors.integers(batch_size, 1, 1_000_000)

    @model_validator(mode="after")
    def _one_architecture_form(self):
        if (self.width is None) == (self.hidden is None):
            raise ValueError("give either 'width' (with 'depth') or 'hidden'")
        return self

    @model_validator(mode="after")
    def _epochs_of_data(self):
        if self.epochs is None:
            return self
        if self.problem.data is None:
            raise ValueError("epochs: only a data set has epochs; give 'steps'")
        if "steps" in self.model_fields_set:
            raise ValueError("give either 'steps' or 'epochs', not both")
        return self

    @model_validator(mode="after")
    def _batches_fit_the_data(self):
        if self.problem.data is not None:
            problem = self.problem.build()
            for batch_size in factors.as_list(self.batch_size):
                self.step_counts(problem, batch_size)
        return self

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler):
        # A part without epochs, with ReLU, dumps as before these fields existed,
        # so that stored studies keep their spec and resume.
        data = handler(self)
        data.pop("epochs" if self.epochs is None else "steps", None)
        if self.activation == "relu":
            data.pop("activation", None)
        if self.negative_slope == 0.01:
            data.pop("negative_slope", None)
        return data

    def step_counts(self, problem: Problem, batch_size: int) -> list[int]:
        """The part's step counts at one batch size: the ``steps`` factor, or
        ``epochs`` times the batches of one epoch, ``n // batch_size``; raise where a
        batch exceeds the data."""
        if problem.data is None:
            return factors.as_list(self.steps)
        size = len(datasets.load(problem.data).train_targets)
        if batch_size > size:
            raise ValueError(
                f"batch_size: {batch_size} exceeds the {size} training examples "
                f"of {problem.data.name()}"
            )
        if self.epochs is None:
            return factors.as_list(self.steps)
        return [self.epochs * (size // batch_size)]

    def architectures(self) -> list[tuple[int, ...]]:
        if self.hidden is not None:
            return [tuple(widths) for widths in self.hidden]
        return [
            (width,) * depth
            for width, depth in itertools.product(self.width, self.depth)
        ]


class ExperimentSpec(_Strict):
    name: str = Field("experiment", min_length=1, max_length=128)
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**31)
    runs: int = Field(256, ge=1, le=10_000_000)
    chunk_size: int = Field(256, ge=1, le=1_000_000, description="most runs at once")
    memory_budget_mb: int = Field(1024, ge=16, description="memory for one chunk")
    tolerance: float = Field(1e-4, gt=0)
    dtype: Literal["float32", "float64"] = "float32"
    checkpoints: int = Field(12, ge=2, le=1000)
    parts: list[PartSpec] = Field(min_length=1)

    @field_validator("parts")
    @classmethod
    def _unique_part_names(cls, parts):
        names = [part.name for part in parts]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            raise ValueError(f"part names must be unique; {twice!r} appears twice")
        return parts

    @model_validator(mode="after")
    def _distinct_cells(self):
        cells(self)
        return self


def _model_in(annotation) -> type[BaseModel] | None:
    """The spec model an annotation holds, directly or in a list or union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _fields_at(location: tuple) -> list[str]:
    """The field names allowed in the table at ``location`` of a spec."""
    model = ExperimentSpec
    for item in location:
        if isinstance(item, str):
            field = model.model_fields.get(item)
            model = None if field is None else _model_in(field.annotation)
            if model is None:
                return []
    return [
        name
        for name, field in model.model_fields.items()
        if not (field.json_schema_extra or {}).get("internal")
    ]


def _describe(error: pydantic.ValidationError, source: str) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(item) for item in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            allowed = _fields_at(problem["loc"][:-1])
            message = "unknown field" + (
                f"; allowed: {', '.join(allowed)}" if allowed else ""
            )
        lines.append(f"{source}: field {where}: {message}")
    return "\n".join(lines)


def parse_spec(
    data: dict, source: str = "spec", base: str | Path | None = None
) -> ExperimentSpec:
    """Validate spec data; raise :class:`SpecError` naming every bad field.

    Relative data paths are taken from ``base`` (the current directory if None).
    """
    try:
        return ExperimentSpec.model_validate(
            data, context={"base": str(base) if base is not None else None}
        )
    except pydantic.ValidationError as error:
        raise SpecError(_describe(error, source)) from None


def load_spec(path: str | Path | None = None) -> ExperimentSpec:
    """Read and validate a TOML spec; ``None`` is the built-in default study."""
    path = Path(path) if path is not None else DEFAULT_SPEC
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, not a spec file") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML: {error}") from None
    return parse_spec(data, str(path), path.resolve().parent)


def with_runs(spec: ExperimentSpec, runs: int) -> ExperimentSpec:
    """The spec with ``runs`` runs in every cell."""
    if runs < 1:
        raise SpecError(f"--runs: must be at least 1, got {runs}")
    parts = [part.model_copy(update={"runs": None}) for part in spec.parts]
    return spec.model_copy(update={"runs": runs, "parts": parts})


def cells(spec: ExperimentSpec) -> list[tuple[Cell, int]]:
    """Every cell of the experiment with its number of runs, in grid order."""
    expanded = []
    for part in spec.parts:
        problem = part.problem.build()
        for hidden, init, batch_size, optimizer in itertools.product(
            part.architectures(),
            part.init.build(),
            factors.as_list(part.batch_size),
            part.optimizers,
        ):
            steps = (
                optimizer.steps
                if optimizer.steps is not None
                else part.step_counts(problem, batch_size)
            )
            for step_count, learning_rate in itertools.product(
                factors.as_list(steps), optimizer.learning_rates()
            ):
                cell = Cell(
                    part=part.name,
                    problem=problem,
                    hidden=hidden,
                    init=init,
                    optimizer=optimizer.name,
                    learning_rate=learning_rate,
                    settings=tuple(sorted(optimizer.settings.items())),
                    steps=step_count,
                    batch_size=batch_size,
                    tolerance=part.tolerance or spec.tolerance,
                    dtype=spec.dtype,
                    checkpoints=spec.checkpoints,
                    convention=optimizer.convention,
                    schedule=optimizer.schedule.as_items(),
                    activation=part.activation,
                    negative_slope=part.negative_slope,
                )
                expanded.append((cell, part.runs or spec.runs))
    identities = [cell.identity for cell, _ in expanded]
    for cell, _ in expanded:
        if identities.count(cell.identity) > 1:
            raise ValueError(f"parts: the cell '{cell.label()}' appears twice")
    return expanded


def chunks(runs: int, chunk_size: int) -> list[range]:
    """The run indices ``0 .. runs - 1`` cut into consecutive chunks."""
    return [
        range(start, min(start + chunk_size, runs))
        for start in range(0, runs, chunk_size)
    ]


# Labels and resources: no cell identity or run depends on them.
EXTENDABLE = (
    "name",
    "description",
    "runs",
    "parts",
    "chunk_size",
    "memory_budget_mb",
)


def _changed_fields(old: Cell, new: Cell) -> list[str]:
    before, after = flat_record(old), flat_record(new)
    return [
        f"{key} ({before[key]!r} -> {after.get(key)!r})"
        for key in before
        if before[key] != after.get(key)
    ]


def _values_only_in(records: list[dict], others: list[dict]) -> dict[str, list]:
    """Per field of the flat ``records``, the values some of them have and none of
    ``others`` has, each once, in the order first met."""
    found: dict[str, dict[str, object]] = {}
    for record in records:
        for key, value in record.items():
            if all(other.get(key) != value for other in others):
                found.setdefault(key, {})[json.dumps(value)] = value
    return {key: list(seen.values()) for key, seen in found.items()}


def _missing_cell(cell: Cell, label: str, others: list[Cell], stored: list[Cell]):
    """Why the stored ``cell`` is not among ``others``, the new cells of its part
    (``stored``: the stored cells of the part): its values that no new cell keeps,
    each with the values only new cells have, or else how the closest one differs."""
    new_records = [flat_record(other) for other in others]
    gone = _values_only_in([flat_record(cell)], new_records)
    added = _values_only_in(new_records, [flat_record(other) for other in stored])
    changes = [
        f"{key} ({value!r} -> "
        f"{', '.join(repr(now) for now in added.get(key, [])) or 'nothing'})"
        for key, (value,) in gone.items()
    ]
    if changes:
        why = f"no new cell of its part keeps its {', '.join(changes)}"
    else:
        closest = min(others, key=lambda other: len(_changed_fields(cell, other)))
        why = "the closest new cell differs in field(s) " + ", ".join(
            _changed_fields(cell, closest)
        )
    return f"the stored cell '{label}' is missing from the new spec: {why}"


def additions(stored: ExperimentSpec, spec: ExperimentSpec) -> str:
    """What ``spec``, which extends ``stored``, adds to it, in words: the new cells
    with the values only they have, and the cells that get more runs."""
    stored_cells = cells(stored)
    before = {cell.identity: runs for cell, runs in stored_cells}
    new_cells, more_runs = [], 0
    for cell, runs in cells(spec):
        if cell.identity not in before:
            new_cells.append(cell)
        elif runs > before[cell.identity]:
            more_runs += 1
    values = _values_only_in(
        [flat_record(cell) for cell in new_cells],
        [flat_record(cell) for cell, _ in stored_cells],
    )
    said = []
    if new_cells:
        shown = "; ".join(
            f"{key} {', '.join(repr(value) for value in seen)}"
            for key, seen in values.items()
        )
        count = len(new_cells)
        said.append(
            f"{count} new cell{'' if count == 1 else 's'}"
            + (f" ({shown})" if shown else "")
        )
    if more_runs:
        said.append(f"more runs in {more_runs} stored cells")
    return " and ".join(said) or "no run or cell"


def check_extension(stored: ExperimentSpec, spec: ExperimentSpec) -> None:
    """Check that ``spec`` extends ``stored``: more runs per cell or more cells.

    Every cell of ``stored`` must be a cell of ``spec`` with at least as many runs,
    and the fields that shape every cell or run (seed, dtype, tolerance, ...) must be
    equal.  The labels ``name`` and ``description`` may change: a run is keyed by
    ``(seed, cell, run index)`` and no cell holds them.

    Raises:
        SpecError: naming the field that changed.
    """
    for field in ExperimentSpec.model_fields:
        before, after = getattr(stored, field), getattr(spec, field)
        if field not in EXTENDABLE and before != after:
            raise SpecError(
                f"field {field}: changed from {before!r} to {after!r}, which changes "
                "the stored runs; extending may only add runs or cells"
            )
    new_cells = cells(spec)
    runs_of = {cell.identity: runs for cell, runs in new_cells}
    stored_cells = cells(stored)
    labels = distinct_labels(cell for cell, _ in stored_cells)
    for cell, runs in stored_cells:
        if cell.identity not in runs_of:
            same_part = [other for other, _ in new_cells if other.part == cell.part]
            if not same_part:
                raise SpecError(
                    f"field parts: the part {cell.part!r} with stored runs is "
                    "missing; extending may only add runs or cells"
                )
            raise SpecError(
                _missing_cell(
                    cell,
                    labels[cell.identity],
                    same_part,
                    [other for other, _ in stored_cells if other.part == cell.part],
                )
                + "; extending may only add runs or cells"
            )
        if runs_of[cell.identity] < runs:
            raise SpecError(
                f"field runs: the cell '{labels[cell.identity]}' would plan "
                f"{runs_of[cell.identity]} runs, fewer than the {runs} stored ones "
                "were planned with; extending may only add runs or cells"
            )
