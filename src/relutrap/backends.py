"""Executing an experiment: cells, chunks of runs, backends, the store.

The runs of every cell are cut into chunks sized to the memory budget
(:func:`plan`).  A *backend* trains the chunks not yet stored and hands back their
outcomes; the driver, this process, alone writes them to the store, each chunk in one
transaction.  On a second call with the same spec and output, chunks already stored
are skipped and a chunk that was in flight when a process died is trained again, so
no run is lost or stored twice (the store's key ``(cell, run_index)`` refuses a
second copy).  A run's result depends only on ``(seed, cell, run index)``, so it does
not matter which backend, chunk or attempt computed it.

Backends:

* ``local``: the chunks one after the other in this process (the default);
* ``ray``: the chunks as tasks of a Ray cluster (``pip install 'relutrap[ray]'``),
  a local one started on 127.0.0.1 when no address is given.  A task whose worker
  dies is retried by Ray; a task that fails all the same is submitted again by the
  driver, up to a limit.

For testing the retry path, the environment variable ``RELUTRAP_FAULT`` set to
``KIND:RUN:MARKER`` makes the first Ray task of a chunk starting at run index ``RUN``
fail, once: it creates the file ``MARKER`` and then exits its worker process at once
(``KIND`` = ``exit``) or raises (``raise``).  Later attempts find the marker and run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from relutrap import engine, optimizers
from relutrap.cells import Cell, distinct_labels
from relutrap.experiment import (
    ExperimentSpec,
    SpecError,
    additions,
    cells,
    check_extension,
    chunks,
    parse_spec,
)
from relutrap.problems import optimal_risk
from relutrap.store import StoreError, check_output, open_for_writing

BACKENDS = ("local", "ray")
RAY_INSTALL = "pip install 'relutrap[ray]'"
FAULT_VARIABLE = "RELUTRAP_FAULT"


class BackendError(RuntimeError):
    """A backend cannot be used or gave up on a chunk; the message says why."""


@dataclass(frozen=True)
class Chunk:
    """Runs of one cell trained together.

    Attributes:
        cell: the cell.
        runs: the run indices to train (those of the planned chunk not yet stored).
        planned: how many runs the planned chunk holds.
        label: the cell's label, told apart from the other cells of the spec.
    """

    cell: Cell
    runs: tuple[int, ...]
    planned: int
    label: str


def total_runs(spec: ExperimentSpec) -> int:
    """The number of runs the experiment asks for."""
    return sum(runs for _, runs in cells(spec))


def chunk_size(spec: ExperimentSpec, cell: Cell) -> int:
    """The runs of ``cell`` trained at once: at most the spec's ``chunk_size``, and
    few enough to fit the spec's memory budget."""
    return engine.runs_per_chunk(cell, spec.chunk_size, spec.memory_budget_mb * 2**20)


def plan(spec: ExperimentSpec, stored: dict[str, set[int]] | None = None):
    """Cut every cell's runs into chunks and leave out the runs already stored.

    Args:
        stored: the stored run indices by cell identity.

    Returns:
        ``(chunks, skipped)``: the chunks to train, in grid order, and the number
        of planned runs found already stored, by cell label.
    """
    stored = stored or {}
    planned, skipped = [], {}
    grid = cells(spec)
    labels = distinct_labels(cell for cell, _ in grid)
    for cell, runs in grid:
        done = stored.get(cell.identity, set())
        label = labels[cell.identity]
        skipped[label] = len(done & set(range(runs)))
        for chunk in chunks(runs, chunk_size(spec, cell)):
            missing = tuple(index for index in chunk if index not in done)
            if missing:
                planned.append(Chunk(cell, missing, len(chunk), label))
    return planned, skipped


def custom_transforms(spec: ExperimentSpec, custom: dict | None) -> dict:
    """The given transforms by the full names of the cells that use them; raise
    :class:`SpecError` for a ``custom:`` name without one."""
    custom = custom or {}
    named = {}
    for cell, _ in cells(spec):
        if cell.optimizer.startswith(optimizers.CUSTOM_PREFIX):
            name = cell.optimizer.removeprefix(optimizers.CUSTOM_PREFIX)
            if name not in custom:
                raise SpecError(
                    f"part {cell.part!r}, optimizer {cell.optimizer}: no transform "
                    f"named {name!r} given; a custom: optimizer is given from Python "
                    "(relutrap.study(spec, custom={...})), not on the command line"
                )
            named[cell.optimizer] = custom[name]
    return named


def run_experiment(
    spec: ExperimentSpec,
    directory: str | Path,
    on_progress: Callable[[int, str, bool], None] | None = None,
    custom: dict | None = None,
    backend: str = "local",
    address: str | None = None,
    extend: bool = False,
    workers: int | None = None,
    on_start: Callable[[], None] | None = None,
) -> None:
    """Train every run of ``spec`` not yet in the store at ``directory``.

    Everything that can refuse the study is checked before anything is written:
    the output, the Ray cluster (connected before the store is created) and the
    spec against the stored one.  A failed check leaves no new file behind.

    Args:
        on_progress: called with a number of runs, the label of their cell, and
            whether they were trained now (``True``) or found already stored
            (``False``, reported before any training).
        custom: the optimizers named ``custom:<name>`` in the spec, by name: optax
            ``GradientTransformation``s or :class:`relutrap.optimizers.Method`s.
        backend: ``"local"`` or ``"ray"``.
        address: the Ray cluster's ``HOST:PORT``; ``None`` starts a local one (or
            uses the one this process is already connected to).
        extend: accept a spec that adds runs to stored cells or adds cells; any
            other change to a stored spec is refused.
        workers: CPUs of a local Ray cluster (all of this machine's by default).
        on_start: called once every check has passed, before the first call of
            ``on_progress``.

    Raises:
        SpecError: a ``custom:`` optimizer was not given, or ``extend`` cannot
            reconcile the spec with the stored one (the message names the field).
        relutrap.store.StoreError: the output cannot be used (another writer, a
            different spec without ``extend``, not a directory).
        BackendError: Ray is missing or a chunk failed every attempt.
    """
    if backend not in BACKENDS:
        raise BackendError(
            f"backend {backend!r} unknown; allowed: {', '.join(BACKENDS)}"
        )
    planned_cells = cells(spec)
    transforms = custom_transforms(spec, custom)
    report = on_progress or (lambda count, label, trained: None)
    variances = {
        cell.identity: engine.target_variance(cell) for cell, _ in planned_cells
    }

    check_output(directory)
    with _cluster(backend, address, workers), open_for_writing(directory) as store:
        stored_spec = store.stored_spec()
        if extend and stored_spec is not None:
            try:
                check_extension(parse_spec(stored_spec, "stored spec"), spec)
            except SpecError as error:
                raise SpecError(
                    f"{store.directory} holds the results of a spec that the new "
                    f"one does not extend: {error}"
                ) from None
        elif stored_spec is not None:
            _check_same_spec(store, stored_spec, spec)
        store.begin(spec.model_dump(mode="json"), replace=extend)
        if on_start is not None:
            on_start()
        for position, (cell, runs) in enumerate(planned_cells):
            store.add_cell(
                cell,
                position,
                runs,
                engine.checkpoint_steps(cell.steps, cell.checkpoints),
                optimal_risk(cell.problem, cell.architecture),
                variances[cell.identity],
            )
        stored = {cell.identity: store.stored_runs(cell) for cell, _ in planned_cells}
        to_train, skipped = plan(spec, stored)
        for label, count in skipped.items():
            if count:
                report(count, label, False)
        if not to_train:
            return
        if backend == "ray":
            outcomes = _ray_outcomes(to_train, spec.seed, transforms)
        else:
            outcomes = _local_outcomes(to_train, spec.seed, transforms)
        try:
            for chunk, result in outcomes:
                cell = chunk.cell
                variance = variances[cell.identity]
                store.add_runs(
                    cell,
                    result,
                    engine.certified_nonconvergent(cell, result),
                    engine.observed_nonconvergent(cell, result, variance),
                )
                report(len(chunk.runs), chunk.label, True)
        finally:
            outcomes.close()


def _check_same_spec(store, stored_spec: dict, spec: ExperimentSpec) -> None:
    """Refuse a spec other than the stored one, naming what differs as precisely
    as ``--extend`` does (:func:`relutrap.experiment.check_extension`)."""
    given = spec.model_dump(mode="json")
    if json.dumps(given, sort_keys=True) == json.dumps(stored_spec, sort_keys=True):
        return
    differing = sorted(
        key
        for key in set(given) | set(stored_spec)
        if given.get(key) != stored_spec.get(key)
    )
    shown = ", ".join(
        key
        if isinstance(given.get(key), list | dict)
        else f"{key} ({stored_spec.get(key)!r} -> {given.get(key)!r})"
        for key in differing
    )
    stored = parse_spec(stored_spec, "stored spec")
    try:
        check_extension(stored, spec)
    except SpecError as error:
        detail = str(error).removesuffix("; extending may only add runs or cells")
        raise StoreError(
            f"{store.directory} holds the results of a different spec (it differs "
            f"in: {shown}; {detail}); --extend cannot add to it either; run it "
            "with its own spec to resume, or choose another --out"
        ) from None
    change = (
        "no stored run depends on these"
        if set(differing) <= {"name", "description", "chunk_size", "memory_budget_mb"}
        else f"the new spec adds {additions(stored, spec)}"
    )
    raise StoreError(
        f"{store.directory} holds the results of a different spec (it differs in: "
        f"{shown}; {change}); run it with its own spec to resume, add --extend to "
        "take the new spec, or choose another --out"
    )


def _local_outcomes(to_train, seed, transforms) -> Iterator[tuple[Chunk, object]]:
    for chunk in to_train:
        yield (
            chunk,
            engine.train_runs(
                chunk.cell, seed, chunk.runs, transforms.get(chunk.cell.optimizer)
            ),
        )


def train_chunk(cell: Cell, seed: int, runs, transform=None, fault: str = ""):
    """The body of a Ray task: :func:`relutrap.engine.train_runs`, after the fault
    described by ``fault`` (see the module's docstring) where it applies."""
    if fault:
        kind, first, marker = fault.split(":", 2)
        if runs[0] == int(first):
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                if kind == "exit":
                    os._exit(1)
                raise RuntimeError(f"injected fault in the chunk at run {first}")
    return engine.train_runs(cell, seed, runs, transform)


def require_ray() -> None:
    """Raise :class:`BackendError`, saying how to install Ray, where it is missing.

    Ray is looked up, not imported: :func:`connect_ray` must make a setting before
    its first import.
    """
    if importlib.util.find_spec("ray") is None:
        raise BackendError(
            f"the ray backend needs Ray, which is not installed: {RAY_INSTALL}"
        )


def import_ray():
    """The ``ray`` module, or :class:`BackendError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BackendError(
            f"the ray backend needs Ray, which is not installed: {RAY_INSTALL}"
        ) from None
    return ray


def connect_ray(address: str | None = None, workers: int | None = None) -> bool:
    """Connect this process to a Ray cluster; return whether it started one.

    Keeps an existing connection.  Without ``address`` it starts a local cluster
    whose node address is 127.0.0.1 (no dashboard, a small object store,
    ``workers`` CPUs).  A loopback ``address`` (``127.x.x.x:PORT`` or
    ``localhost:PORT``) is reached on the loopback interface too.
    """
    host = (address or "").rpartition(":")[0]
    if address is None or host == "localhost" or host.startswith("127."):
        # Ray's switch to keep a single-machine cluster on the loopback address
        # (otherwise it swaps a loopback address for the machine's own); read when
        # Ray is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is not None:
        _check_reachable(address)
    options = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with warnings.catch_warnings():
            # Ray starts its processes by fork and exec; JAX's warning about fork in a
            # threaded process concerns a fork that goes on running Python.
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            if address is None:
                ray.init(
                    num_cpus=workers or os.cpu_count(),
                    object_store_memory=128 * 2**20,
                    _node_ip_address="127.0.0.1",
                    **options,
                )
            else:
                ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = address or "a local cluster"
        raise BackendError(f"cannot connect to Ray at {where}: {error}") from None
    return True


def _check_reachable(address: str, seconds: float = 10.0) -> None:
    """Fail fast, with :class:`BackendError`, where nothing listens at a
    ``HOST:PORT`` address (Ray itself would retry for minutes); other address
    forms go to Ray as they are."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as error:
        raise BackendError(
            f"cannot reach a Ray cluster at {address}: {error.strerror or error}"
        ) from None


@contextmanager
def _cluster(backend: str, address: str | None, workers: int | None):
    """Connected to Ray for the ray backend; a cluster started here is shut down
    at the end."""
    started = backend == "ray" and connect_ray(address, workers)
    try:
        yield
    finally:
        if started:
            import_ray().shutdown()


def _ray_outcomes(
    to_train, seed, transforms, resubmits: int = 2
) -> Iterator[tuple[Chunk, object]]:
    """Outcomes of the chunks as Ray tasks finish them, in the order they finish.

    At most twice as many tasks as the cluster has CPUs are in flight.  Ray retries
    a task whose worker died (``max_retries``); a task that fails all the same is
    submitted again, at most ``resubmits`` times, then :class:`BackendError`.
    """
    ray = import_ray()
    task = ray.remote(max_retries=3)(train_chunk)
    fault = os.environ.get(FAULT_VARIABLE, "")
    in_flight = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    waiting = list(enumerate(to_train))
    running: dict = {}
    failures = [0] * len(to_train)

    def submit(number: int, chunk: Chunk) -> None:
        transform = transforms.get(chunk.cell.optimizer)
        reference = task.remote(chunk.cell, seed, chunk.runs, transform, fault)
        running[reference] = (number, chunk)

    while waiting or running:
        while waiting and len(running) < in_flight:
            submit(*waiting.pop(0))
        (done,), _ = ray.wait(list(running), num_returns=1)
        number, chunk = running.pop(done)
        try:
            result = ray.get(done)
        except ray.exceptions.RayError as error:
            failures[number] += 1
            if failures[number] > resubmits:
                raise BackendError(
                    f"{chunk.label}: the chunk of runs {chunk.runs[0]}-"
                    f"{chunk.runs[-1]} failed {failures[number]} times; last "
                    f"error: {_first_line(error)}"
                ) from None
            time.sleep(0.1 * failures[number])
            submit(number, chunk)
            continue
        yield chunk, result


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
