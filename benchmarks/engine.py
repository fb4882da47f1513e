"""Speed and memory of relutrap's engine against the training loops users write.

Run by hand, from the repository root:

    .venv/bin/python benchmarks/engine.py            # the full measurement
    .venv/bin/python benchmarks/engine.py --quick    # fewer steps, a minute or two

It needs PyTorch (``pip install torch``) besides relutrap's own dependencies.  In one
process it measures, for the standard workload (architecture 1-16-16-1, batch 64,
Adam with learning rate 0.01, 2000 steps, 1024 runs, float32, a width-16 teacher on
[0, 1]):

* relutrap's engine (:func:`relutrap.engine.train_runs`, census and risks included);
* a plain PyTorch loop, one run at a time (``nn.Sequential``, ``torch.optim.Adam``),
  timed on a few runs and scaled;
* a jitted optax loop, one run at a time (``jit`` of a ``lax.scan`` over the steps of
  one run, runs looped in Python), timed on a few runs and scaled;

in run-steps per second, and the engine's rate of matrix-multiply arithmetic as a
fraction of this machine's float32 matrix-multiply rate (a 2048 x 2048 ``jnp.dot``,
timed after warm-up).  Every rate is given per wall-clock second and per processor
second (the process's user and system time): on a machine shared with other work the
second is the steadier, though it cannot show the engine's use of several processors.
Then the same at widths 64 and 256 (fewer runs and steps), the time per run-step as
runs and as steps grow, and the peak memory of a fresh process training 65,536 runs
in chunks sized by a memory budget, against one training 4,096.  ``--quick`` divides
the steps by ten.

Matrix-multiply FLOPs of one run-step with batch B and layers of widths
``(n_0, n_1, ..., n_{L+1})``: the forward pass ``2 B sum_k n_{k-1} n_k``, the weight
gradients as many, and the gradients with respect to the hidden activations
``2 B sum_{k>=2} n_{k-1} n_k`` (the input needs none).  Bias additions, activations,
the loss, the optimizer and the sampling are not counted: they are work, but not
matrix-multiply work.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

STANDARD = {"width": 16, "batch": 64, "steps": 2000, "runs": 1024, "lr": 0.01}


def matmul_flops(arch: tuple[int, ...], batch: int) -> int:
    """Matrix-multiply FLOPs of one training step of one run (see the module)."""
    products = [fan_in * fan_out for fan_in, fan_out in zip(arch, arch[1:])]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


def _cell(width: int, steps: int, batch: int = 64, lr: float = 0.01):
    from relutrap.cells import Cell
    from relutrap.init import Initialization
    from relutrap.problems import Problem

    return Cell(
        part="benchmark",
        problem=Problem(),
        hidden=(width, width),
        init=Initialization(),
        optimizer="adam",
        learning_rate=lr,
        steps=steps,
        batch_size=batch,
    )


def _processor_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _best_seconds(function, repeats: int) -> tuple[float, float]:
    """The shortest wall-clock time of ``repeats`` calls, and that call's processor
    time (all threads of this process)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        start, processor = time.perf_counter(), _processor_seconds()
        function()
        wall = time.perf_counter() - start
        best = min(best, (wall, _processor_seconds() - processor))
    return best


def _rates(count: int, seconds: tuple[float, float]) -> dict:
    """``count`` run-steps per wall-clock second and per processor second."""
    wall, processor = seconds
    return {"wall": count / wall, "processor": count / processor}


def matmul_rate(size: int = 2048, repeats: int = 5) -> dict:
    """The machine's float32 matrix-multiply rate in GFLOP per wall-clock and per
    processor second."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    seconds = _best_seconds(lambda: dot(a, b).block_until_ready(), repeats)
    return {key: rate / 1e9 for key, rate in _rates(2 * size**3, seconds).items()}


def engine_rate(width: int, runs: int, steps: int) -> dict:
    """Run-steps per second of relutrap's engine, compilation excluded."""
    from relutrap import engine

    cell = _cell(width, steps)
    engine.train_runs(cell, 0, range(runs))  # compile for these shapes
    seconds = _best_seconds(lambda: engine.train_runs(cell, 0, range(runs)), 1)
    return _rates(runs * steps, seconds)


def torch_rate(width: int, runs: int, steps: int) -> dict:
    """Run-steps per second of a plain PyTorch loop, one run after the other.

    PyTorch runs on one thread: for a network this small its default of one thread
    per processor is slower, and on a busy machine much slower.
    """
    import numpy as np
    import torch

    torch.set_num_threads(1)

    from relutrap.problems import Problem, teacher_params

    (w1, b1), (w2, b2) = teacher_params(Problem(), width, np.float32)
    teacher = [torch.tensor(np.asarray(a)) for a in (w1, b1, w2, b2)]

    def target(x):
        hidden = torch.relu(x @ teacher[0] + teacher[1])
        return (hidden @ teacher[2] + teacher[3])[:, 0]

    def train_one(seed):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(1, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, 1),
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=STANDARD["lr"])
        for _ in range(steps):
            x = torch.rand(STANDARD["batch"], 1)
            loss = torch.mean((model(x)[:, 0] - target(x)) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    train_one(0)  # warm-up
    seconds = _best_seconds(lambda: [train_one(seed) for seed in range(runs)], 1)
    return _rates(runs * steps, seconds)


def optax_rate(width: int, runs: int, steps: int) -> dict:
    """Run-steps per second of a jitted optax loop, one run after the other."""
    import jax
    import jax.numpy as jnp
    import optax

    from relutrap.init import Initialization, initialize
    from relutrap.networks import realization
    from relutrap.problems import Problem, target_values

    problem = Problem()
    arch = (1, width, width, 1)
    optimizer = optax.adam(STANDARD["lr"])

    def loss(params, x):
        errors = realization(params, x) - target_values(problem, arch, x)
        return jnp.mean(errors * errors)

    @jax.jit
    def train_one(key):
        params = initialize(jax.random.fold_in(key, 0), arch, Initialization())
        state = optimizer.init(params)

        def step(carry, n):
            params, state = carry
            x = jax.random.uniform(
                jax.random.fold_in(key, n), (STANDARD["batch"], 1), jnp.float32
            )
            gradient = jax.grad(loss)(params, x)
            updates, state = optimizer.update(gradient, state, params)
            return (optax.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, state), jnp.arange(steps))
        return params

    keys = [jax.random.key(seed) for seed in range(runs)]
    jax.block_until_ready(train_one(keys[0]))  # compile
    seconds = _best_seconds(
        lambda: [jax.block_until_ready(train_one(key)) for key in keys], 1
    )
    return _rates(runs * steps, seconds)


def compare(width: int, sizes: dict, matmul: dict) -> dict:
    """All three loops at one width; sizes gives (runs, steps) for each."""
    arch = (1, width, width, 1)
    row = {"width": width, "sizes": sizes}
    row["engine"] = engine_rate(width, *sizes["engine"])
    row["torch"] = torch_rate(width, *sizes["torch"])
    row["optax"] = optax_rate(width, *sizes["optax"])
    flops = matmul_flops(arch, STANDARD["batch"])
    row["engine_gflops"] = {
        clock: rate * flops / 1e9 for clock, rate in row["engine"].items()
    }
    row["fraction_of_matmul"] = {
        clock: row["engine_gflops"][clock] / matmul[clock] for clock in matmul
    }
    return row


def _report(row: dict, clock: str) -> str:
    engine, torch, optax = (row[name][clock] for name in ("engine", "torch", "optax"))
    return (
        f"  per {clock} second: engine {engine:,.0f}  torch {torch:,.0f}  "
        f"optax {optax:,.0f} run-steps  |  engine/torch {engine / torch:.0f}x  "
        f"engine/optax {engine / optax:.1f}x  |  engine "
        f"{row['engine_gflops'][clock]:.1f} GFLOP = "
        f"{100 * row['fraction_of_matmul'][clock]:.0f}% of the matmul rate"
    )


def peak_memory(runs: int, steps: int, budget_mb: int) -> dict:
    """Peak resident memory of a fresh process training ``runs`` runs in chunks."""
    code = f"""
import json, resource, sys
sys.path.insert(0, {sys.path[0]!r})
from engine import _cell
from relutrap import engine
cell = _cell(16, {steps})
size = engine.runs_per_chunk(cell, 1_000_000, {budget_mb} * 2**20)
for start in range(0, {runs}, size):
    engine.train_runs(cell, 0, range(start, min(start + size, {runs})))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"chunk": size, "peak_mib": peak / 1024}}))
"""
    start = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result.update(runs=runs, steps=steps, budget_mb=budget_mb)
    result["seconds"] = time.perf_counter() - start
    return result


def scaling(width: int, pairs: list[tuple[int, int]]) -> list[dict]:
    """Wall-clock microseconds per run-step of the engine at several (runs, steps)."""
    rows = []
    for runs, steps in pairs:
        rate = engine_rate(width, runs, steps)["wall"]
        rows.append({"runs": runs, "steps": steps, "us_per_run_step": 1e6 / rate})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and runs")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    steps = 200 if args.quick else STANDARD["steps"]
    few = 2 if args.quick else 4

    load = _load()
    matmul = matmul_rate()
    print(
        f"float32 matrix multiply (2048 x 2048 jnp.dot): {matmul['wall']:.1f} GFLOP "
        f"per wall-clock second, {matmul['processor']:.1f} per processor second"
    )
    plans = {
        16: {
            "engine": (STANDARD["runs"], steps),
            "torch": (few, steps),
            "optax": (few, steps),
        },
        64: {
            "engine": (256, steps // 2),
            "torch": (2, steps // 4),
            "optax": (2, steps // 2),
        },
        256: {
            "engine": (32, steps // 4),
            "torch": (1, steps // 8),
            "optax": (1, steps // 4),
        },
    }
    results = {"quick": args.quick, "load_before": load, "matmul_gflops": matmul}
    results["widths"] = []
    for width, sizes in plans.items():
        row = compare(width, sizes, matmul)
        results["widths"].append(row)
        print(f"1-{width}-{width}-1 (runs, steps): {sizes}")
        print(_report(row, "wall"))
        print(_report(row, "processor"))

    base = steps // 4
    pairs = [(256, base), (512, base), (1024, base), (1024, 2 * base)]
    results["scaling"] = scaling(16, pairs)
    for row in results["scaling"]:
        print(
            f"scaling  {row['runs']:5d} runs x {row['steps']:5d} steps: "
            f"{row['us_per_run_step']:.2f} us per run-step"
        )

    memory_steps = 20 if args.quick else 100
    results["memory"] = [
        peak_memory(runs, memory_steps, budget_mb=256) for runs in (4096, 65536)
    ]
    for row in results["memory"]:
        print(
            f"memory  {row['runs']:6d} runs x {row['steps']} steps in chunks of "
            f"{row['chunk']} (budget {row['budget_mb']} MiB): peak RSS "
            f"{row['peak_mib']:.0f} MiB ({row['seconds']:.0f} s)"
        )
    results["load_after"] = _load()
    print(f"load average before/after: {load} / {results['load_after']}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)


def _load() -> list[float]:
    import os

    return [round(value, 1) for value in os.getloadavg()]


if __name__ == "__main__":
    main()
