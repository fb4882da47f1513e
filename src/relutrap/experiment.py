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
    activation = "relu"         # or leaky_relu (with negative_slope = 0.01), softplus

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

Every field is checked; a wrong one raises :class:`SpecError` naming it.
"""

from __future__ import annotations

import itertools
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
    field_validator,
    model_serializer,
    model_validator,
)

from relutrap import optimizers, schedules
from relutrap.cells import Cell
from relutrap.init import BIAS_RULES, SCHEMES, Initialization
from relutrap.networks import ACTIVATIONS
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


class ProblemSpec(_Strict):
    dimension: int = Field(1, ge=1, le=64)
    domain: list[float] = Field([0.0, 1.0], min_length=2, max_length=2)
    target: TargetName = "teacher"
    teacher_width: int = Field(0, ge=0, description="0: the student's first width")
    teacher_seed: int = Field(0, ge=0)
    value: float = Field(1.0, description="value of a constant target")
    frequency: float = Field(1.0, gt=0, description="cycles per unit of a sin target")
    evaluation_size: int = Field(1024, ge=2, le=1_000_000)

    @model_validator(mode="after")
    def _domain_not_empty(self):
        low, high = self.domain
        if not low < high:
            raise ValueError(
                f"domain: lower bound {low} must be below upper bound {high}"
            )
        return self

    def build(self) -> Problem:
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

    @model_validator(mode="after")
    def _asymmetric_bias(self):
        if self.scheme == "asymmetric" and self.bias != "default":
            raise ValueError("bias: the asymmetric scheme draws the biases itself")
        return self

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
    batch_size: int = Field(64, ge=1, le=1_000_000)
    runs: int | None = Field(None, ge=1, description="overrides the experiment's runs")
    tolerance: float | None = Field(None, gt=0)
    activation: Literal[ACTIVATIONS] = "relu"
    negative_slope: float = Field(0.01, gt=0, lt=1, description="of leaky_relu")

    @model_serializer(mode="wrap")
    def _omit_new_defaults(self, handler):
        # A ReLU part dumps as before the activation existed, so that stored
        # studies keep their spec and resume.
        data = handler(self)
        if self.activation == "relu":
            data.pop("activation", None)
        if self.negative_slope == 0.01:
            data.pop("negative_slope", None)
        return data

    @model_validator(mode="after")
    def _one_architecture_form(self):
        if (self.width is None) == (self.hidden is None):
            raise ValueError("give either 'width' (with 'depth') or 'hidden'")
        return self

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


def parse_spec(data: dict, source: str = "spec") -> ExperimentSpec:
    """Validate spec data; raise :class:`SpecError` naming every bad field."""
    try:
        return ExperimentSpec.model_validate(data)
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
    return parse_spec(data, str(path))


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
                steps=optimizer.steps if optimizer.steps is not None else part.steps,
                batch_size=part.batch_size,
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
