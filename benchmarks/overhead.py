"""Where fit's time goes on a small model: dispatch overhead against compute.

Each measurement isolates one cost, timed in interleaved rounds (medians of wall and
process CPU time, per call):

- ``dispatch/*``: one call of a jitted function that returns its inputs, for the
  tutorial MLP's `TrainState` as a pytree, the same state as its flat list of leaves,
  and a hand-written loop's carry (lists of arrays). The difference is the Python cost
  of flattening and rebuilding the TrainState (nnx.State of Variables, optax states).
- ``step/*``: one training step of a tiny MLP (4-8-10, batch 8: compute is negligible),
  through `fit` (one step per dispatch), a hand-written `jax.jit` loop and a `lax.scan`
  over the epoch (no dispatch at all).
- ``conv/*`` (the airbench94 network at a tiny width): one training step at the top level
  of a jitted function, and the same step inside a `lax.scan` of length 1 and 4 (per
  step). XLA:CPU runs convolutions inside a while loop several times slower.
- ``fit_call/*``: the fixed cost of one `fit` call (checks, tracing the model for
  shapes, putting the data on the device) on 64 examples, and `jax.device_put` of a
  Fashion-MNIST-sized array (60000x28x28 float32).

``--trace DIR`` also writes a `jax.profiler` trace of one tutorial-MLP fit epoch
(open it with TensorBoard's profile plugin or Perfetto).

Run: ``python benchmarks/overhead.py --out benchmarks/results/overhead_cpu.json``.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnjax as nj
from nnjax import bench


def mlp_model(width: int, inputs: int, spe: int = 1):
    model = nj.Sequential([nj.layers.Dense(width, activation="relu", input_shape=(inputs,)), nj.layers.Dense(10)])
    model.compile(optimizer=nj.optimizers.Adam(1e-3, epsilon=1e-7), loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=spe, seed=0)  # fmt: skip
    return model


def repeat(fn, calls: int):
    def run():
        out = None
        for _ in range(calls):
            out = fn()
        return out

    return run


def dispatch_contenders(calls: int) -> dict:
    model = mlp_model(128, 784)
    model.build((None, 784))
    state = jax.tree.map(jnp.copy, model.state)  # each contender owns its buffers (they are donated)
    leaves = [jnp.copy(a) for a in jax.tree.leaves(model.state)]
    params = [(jnp.zeros((784, 128)), jnp.zeros(128)), (jnp.zeros((128, 10)), jnp.zeros(10))]
    carry = (params, optax.adam(1e-3).init(params), jnp.zeros(3))
    identity = jax.jit(lambda tree: tree, donate_argnums=0)  # outputs alias the inputs: no copies, only dispatch
    box = {"tree": state, "leaves": leaves, "carry": carry}

    def call(key):
        def run():
            box[key] = identity(box[key])
            return box[key]

        return run

    return {f"dispatch/{k}": repeat(call(k), calls) for k in ("tree", "leaves", "carry")}


def step_contenders(steps: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.random((steps * 8, 4), dtype=np.float32)
    y = rng.integers(0, 10, steps * 8).astype(np.int32)
    fit_model = mlp_model(8, 4)
    tx = optax.adam(1e-3, eps=1e-7)
    params = [(jnp.full((4, 8), 0.1), jnp.zeros(8)), (jnp.full((8, 10), 0.1), jnp.zeros(10))]
    data_x, data_y = jax.device_put(x), jax.device_put(y)

    def step(carry, xb, yb):  # the work of fit's step: loss, accuracy and count sums
        params, opt_state, totals = carry

        def objective(p):
            logits = jax.nn.relu(xb @ p[0][0] + p[0][1]) @ p[1][0] + p[1][1]
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), logits

        (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        accuracy = jnp.mean(jnp.argmax(logits, -1) == yb)
        return optax.apply_updates(params, updates), opt_state, totals + jnp.stack([loss * 8, accuracy * 8, 8.0])

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step_at(carry, i):
        idx = jax.lax.dynamic_slice_in_dim(jnp.arange(steps * 8), i * 8, 8)
        return step(carry, data_x[idx], data_y[idx])

    @functools.partial(jax.jit, donate_argnums=(0,))
    def epoch(carry):
        return jax.lax.scan(lambda c, i: (step(c, *(a[jax.lax.dynamic_slice_in_dim(jnp.arange(steps * 8), i * 8, 8)] for a in (data_x, data_y))), None),
                            carry, jnp.arange(steps))[0]  # fmt: skip

    def fresh():  # each contender owns its buffers (they are donated)
        own = jax.tree.map(jnp.copy, params)
        return own, tx.init(own), jnp.zeros(3)

    box = {"loop": fresh(), "scan": fresh()}

    def loop():
        for i in range(steps):
            box["loop"] = step_at(box["loop"], i)
        return box["loop"]

    def scan():
        box["scan"] = epoch(box["scan"])
        return box["scan"]

    def fit():
        fit_model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
        return fit_model.state.params

    return {"step/nnjax_fit": fit, "step/jax_loop": loop, "step/jax_scan": scan}


def conv_contenders(calls: int) -> dict:
    module = nj.models.Airbench94(widths=(8, 16, 16), classifier_activation=None)
    module(jnp.zeros((1, 32, 32, 3)))
    state = nj.train.TrainState.create(module, nj.optimizers.SGD(0.01, momentum=0.85, nesterov=True),
                                       loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), key=0)  # fmt: skip
    rng = np.random.default_rng(0)
    xb, yb = jnp.asarray(rng.standard_normal((32, 32, 32, 3), dtype=np.float32)), jnp.asarray(rng.integers(0, 10, 32), jnp.int32)

    @functools.partial(jax.jit, donate_argnums=(0,))
    def top(state):
        return nj.train.train_step(state, (xb, yb))[0]

    def in_scan(length):
        @functools.partial(jax.jit, donate_argnums=(0,))
        def run(state):
            return jax.lax.scan(lambda s, _: (nj.train.train_step(s, (xb, yb))[0], None), state, None, length=length)[0]

        return run

    scan1, scan4 = in_scan(1), in_scan(4)
    copy = functools.partial(jax.tree.map, jnp.copy)
    box = {"top": copy(state), "scan1": copy(state), "scan4": copy(state)}

    def make(key, fn, per_call_steps):
        def run():  # `calls` steps in all
            for _ in range(calls // per_call_steps):
                box[key] = fn(box[key])
            return box[key]

        return run

    return {"conv/top_level": make("top", top, 1), "conv/scan_length_1": make("scan1", scan1, 1),
            "conv/scan_length_4": make("scan4", scan4, 4)}  # fmt: skip


def fit_call_contenders() -> dict:
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 4), dtype=np.float32), rng.integers(0, 10, 64).astype(np.int32)
    model = mlp_model(8, 4)
    big = rng.random((60000, 28, 28), dtype=np.float32)

    def fit():
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        return model.state.params

    return {"fit_call/tiny_fit": fit, "fit_call/device_put_188MB": lambda: jax.device_put(big)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per sample for dispatch/, steps per sample for step/")
    parser.add_argument("--conv-steps", type=int, default=8, help="steps per sample for conv/ (a multiple of 4)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--trace", default=None, help="write a jax.profiler trace of one tutorial-MLP fit epoch here")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.conv_steps < 4 or args.conv_steps % 4:
        parser.error(f"--conv-steps must be a positive multiple of 4; got {args.conv_steps}")
    groups = {"dispatch": (dispatch_contenders(args.calls), args.calls), "step": (step_contenders(args.calls), args.calls),
              "conv": (conv_contenders(args.conv_steps), args.conv_steps), "fit_call": (fit_call_contenders(), 1)}  # fmt: skip
    rows = []
    for contenders, per in groups.values():
        stats = bench.interleaved(contenders, rounds=args.rounds, warmup=1)
        for name, s in stats.items():
            rows.append({"name": name, "us_per_call": 1e6 * s["median"] / per, "cpu_us_per_call": 1e6 * s["cpu"]["median"] / per,
                         "rel_spread": s["rel_spread"], "calls_per_sample": per})  # fmt: skip
    by = {r["name"]: r["cpu_us_per_call"] for r in rows}
    ratios = {  # "A vs B" = B's CPU time per call over A's: > 1 means A is cheaper
        "flat leaves vs TrainState pytree (dispatch)": by["dispatch/tree"] / by["dispatch/leaves"],
        "nnjax_fit vs jax_loop (tiny step)": by["step/jax_loop"] / by["step/nnjax_fit"],
        "jax_scan vs jax_loop (tiny step)": by["step/jax_loop"] / by["step/jax_scan"],
        "conv top level vs in scan(1)": by["conv/scan_length_1"] / by["conv/top_level"],
        "conv top level vs in scan(4), per step": by["conv/scan_length_4"] / by["conv/top_level"],
    }
    if args.trace:
        model = mlp_model(128, 784)
        x = np.random.default_rng(0).random((60000, 784), dtype=np.float32)
        y = np.random.default_rng(1).integers(0, 10, 60000).astype(np.int32)
        model.fit(x, y, batch_size=128, epochs=1, verbose=0)
        with jax.profiler.trace(args.trace):
            model.fit(x, y, batch_size=128, epochs=1, verbose=0)
    notes = ["'A vs B' ratios are B's CPU time per call over A's (> 1: A is cheaper); for step/ and conv/ a call is one training step",
             "step/nnjax_fit includes one fit call's fixed cost (see fit_call/tiny_fit) spread over its steps"]  # fmt: skip
    config = {"calls": args.calls, "rounds": args.rounds, "trace": args.trace}
    return bench.write_result(bench.make_result("overhead", rows, config=config, ratios=ratios, notes=notes), args.out)


if __name__ == "__main__":
    main()
