"""Experiment specs: validation, expansion into cells, planning into chunks.

A spec is a TOML file (or the same data as a dict).  It names a seed, the runs per
cell and one or more *parts*; each part is a grid whose cells are the product of its
architectures and its optimizers::

    name = "my-study"
    seed = 0
    runs = 256
    tolerance = 1e-4    # converged when (risk - optimal) / Var f(X) <= this

    [[parts]]
    name = "width"
    width = [1, 2, 4]           # hidden widths ...
    depth = [1]                 # ... times depths; or hidden = [[8, 4], [16]]
    steps = 2000
    batch_size = 64
    problem = { dimension = 1, domain = [0.0, 1.0], target = "teacher" }
    init = { scheme = "normal" }

    [[parts.optimizers]]
    name = "adam"
    learning_rate = 0.01
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
import os
import tomllib
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

from relutrap import datasets, optimizers, schedules
from relutrap.cells import Cell
from relutrap.init import BIAS_RULES, SCHEMES, Initialization
from relutrap.problems import TARGETS, Problem, Target

SchemeName = Literal[SCHEMES]
BiasRule = Literal[BIAS_RULES]
TargetName = Literal[TARGETS]

DEFAULT_SPEC = Path(__file__).parent / "data" / "default.toml"


class SpecError(ValueError):
    """A spec that cannot be run; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, allow_inf_nan=False
    )


Width = Annotated[int, Field(ge=1, le=100_000)]


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
    digest: str | None = None

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
    dimension: int = Field(1, ge=1, le=64)
    domain: list[float] = Field([0.0, 1.0], min_length=2, max_length=2)
    target: TargetName = "teacher"
    teacher_width: int = Field(0, ge=0, description="0: the student's first width")
    teacher_seed: int = Field(0, ge=0)
    value: float = Field(1.0, description="value of a constant target")
    frequency: float = Field(1.0, gt=0, description="cycles per unit of a sin target")
    evaluation_size: int = Field(1024, ge=2, le=1_000_000)
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

    @model_serializer(mode="wrap")
    def _omit_no_data(self, handler):
        # A problem without a data set dumps as before data sets existed, so that
        # stored studies keep their spec and resume.
        data = handler(self)
        if self.data is None:
            data.pop("data", None)
            return data
        return {"data": data["data"]}

    @model_validator(mode="after")
    def _domain_not_empty(self):
        low, high = self.domain
        if not low < high:
            raise ValueError(
                f"domain: lower bound {low} must be below upper bound {high}"
            )
        return self

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
        return Problem(self.dimension, low, high, target, self.evaluation_size)


class InitSpec(_Strict):
    scheme: SchemeName = "normal"
    bias: BiasRule = "default"
    value: float = Field(0.0, description="bias of the 'constant' rule")
    scale: float = Field(1.0, gt=0, description="half-width of the 'uniform' scheme")

    def build(self) -> Initialization:
        return Initialization(self.scheme, self.bias, self.value, self.scale)


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
                f"{unknown} not a parameter of the {self.kind} schedule; "
                f"allowed: {sorted(allowed)}"
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
    learning_rate: float = Field(gt=0)
    steps: int | None = Field(None, ge=0, description="overrides the part's steps")
    settings: dict[str, float | bool | str] = {}
    convention: str = "book"
    schedule: ScheduleSpec = ScheduleSpec()

    @field_validator("name")
    @classmethod
    def _known_name(cls, name):
        if name not in optimizers.OPTIMIZERS and not name.startswith(
            (optimizers.OPTAX_PREFIX, optimizers.CUSTOM_PREFIX)
        ):
            raise ValueError(
                f"unknown optimizer {name!r}; allowed: {tuple(optimizers.OPTIMIZERS)}"
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
                f"allowed: {optimizers.conventions(self.name)}"
            )
        allowed = optimizers.hyperparameters(self.name, self.convention)
        unknown = sorted(set(self.settings) - set(allowed))
        if unknown:
            raise ValueError(
                f"settings: unknown for {self.name}: {unknown}; "
                f"allowed: {sorted(allowed)}"
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
            transform = factory(learning_rate=self.learning_rate, **self.settings)
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
    width: list[Width] | None = Field(None, min_length=1)
    depth: list[Annotated[int, Field(ge=1, le=64)]] = Field([1], min_length=1)
    hidden: list[Annotated[list[Width], Field(min_length=1, max_length=64)]] | None = (
        Field(None, min_length=1)
    )
    optimizers: list[OptimizerSpec] = Field(min_length=1)
    steps: int = Field(1000, ge=0, le=10_000_000)
    epochs: int | None = Field(
        None, ge=1, le=1_000_000, description="data sets: passes instead of steps"
    )
    batch_size: int = Field(64, ge=1, le=1_000_000)
    runs: int | None = Field(None, ge=1, description="overrides the experiment's runs")
    tolerance: float | None = Field(None, gt=0)

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
            self.step_count(self.problem.build())
        return self

    @model_serializer(mode="wrap")
    def _omit_no_epochs(self, handler):
        data = handler(self)
        data.pop("epochs" if self.epochs is None else "steps", None)
        return data

    def step_count(self, problem: Problem) -> int:
        """The part's number of steps: ``steps``, or ``epochs`` times the batches of
        one epoch, ``n // batch_size``; raise where a batch exceeds the data."""
        if problem.data is None:
            return self.steps
        size = len(datasets.load(problem.data).train_targets)
        if self.batch_size > size:
            raise ValueError(
                f"batch_size: {self.batch_size} exceeds the {size} training examples "
                f"of {problem.data.name()}"
            )
        if self.epochs is None:
            return self.steps
        return self.epochs * (size // self.batch_size)

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

    @model_validator(mode="after")
    def _unique_part_names(self):
        names = [part.name for part in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"parts: names must be unique, got {names}")
        cells(self)
        return self


def _describe(error: pydantic.ValidationError, source: str) -> str:
    lines = []
    for problem in error.errors():
        where = ".".join(str(item) for item in problem["loc"]) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
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
        raise SpecError("runs: must be at least 1")
    parts = [part.model_copy(update={"runs": None}) for part in spec.parts]
    return spec.model_copy(update={"runs": runs, "parts": parts})


def cells(spec: ExperimentSpec) -> list[tuple[Cell, int]]:
    """Every cell of the experiment with its number of runs, in grid order."""
    expanded = []
    for part in spec.parts:
        problem = part.problem.build()
        init = part.init.build()
        steps = part.step_count(problem)
        for hidden, optimizer in itertools.product(
            part.architectures(), part.optimizers
        ):
            cell = Cell(
                part=part.name,
                problem=problem,
                hidden=hidden,
                init=init,
                optimizer=optimizer.name,
                learning_rate=optimizer.learning_rate,
                settings=tuple(sorted(optimizer.settings.items())),
                steps=optimizer.steps if optimizer.steps is not None else steps,
                batch_size=part.batch_size,
                tolerance=part.tolerance or spec.tolerance,
                dtype=spec.dtype,
                checkpoints=spec.checkpoints,
                convention=optimizer.convention,
                schedule=optimizer.schedule.as_items(),
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
