"""The tutorial MLP, trained side by side by nnjax and what a researcher would use instead.

Model: Flatten(28x28) -> Dense(128, relu) -> Dense(10) logits (``--depth``/``--width``
change the hidden stack; ``--depth 100 --width 32 --batch-size 32`` is the flax
graph-overhead test). Adam(1e-3, eps 1e-7), sparse categorical cross-entropy,
accuracy metric, batch 128, synthetic Fashion-MNIST-shaped data held in memory
(labels from a random linear teacher, so the loss really falls). Every contender
starts from the same weights, visits the same examples in the same per-epoch
order and does the same work per step: forward, loss, backward, Adam update,
loss and accuracy sums, including the last partial batch.

Contenders, all in one process, timed in interleaved rounds; in each round every
contender trains ``--epochs`` epochs from NumPy arrays in host memory (the JAX
contenders all pay for putting the data on the device once per run, as a
hand-written script does):

- ``nnjax_fit``: ``model.fit(x, y, epochs=E, verbose=0)`` with the default ``steps_per_execution="auto"``
  (measured during the warm-up run's first epoch, remembered by the later runs).
- ``nnjax_fit_spe``: the same with ``compile(steps_per_execution=K)``.
- ``jax_loop``: hand-written ``jax.jit`` + optax step per batch on device-resident arrays.
- ``jax_scan``: the whole epoch under one ``lax.scan`` (the overhead-free ceiling).
- ``keras_fit``: Keras 3 ``fit`` on the JAX backend (skipped if keras is missing).
- ``keras_fit_spe``: Keras with ``steps_per_execution=K``.
- ``torch_eager``: PyTorch eager (skipped if torch is missing).

Run: ``python benchmarks/mlp.py --out benchmarks/results/mlp_cpu.json``.
Tiny smoke run: ``python benchmarks/mlp.py --examples 300 --rounds 1``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import nnjax as nj
from nnjax import bench

ALL = ("nnjax_fit", "nnjax_fit_spe", "jax_loop", "jax_scan", "keras_fit", "keras_fit_spe", "torch_eager")
LEARNING_RATE, EPSILON = 1e-3, 1e-7


def make_data(n: int, seed: int = 0):
    """Fashion-MNIST-shaped data: x float32 (n, 28, 28) in [0, 1], y int32 (n,) in [0, 10) from a linear teacher."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28), dtype=np.float32)
    teacher = rng.standard_normal((784, 10)).astype(np.float32)
    y = np.argmax((x.reshape(n, -1) - 0.5) @ teacher, axis=1).astype(np.int32)
    return x, y


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The example order of an epoch, as nnjax's ArraySource draws it (shared by all hand-written contenders)."""
    return nj.data.epoch_permutation(seed, epoch, n)


def build_nnjax(args, seed: int, steps_per_execution: int | str):
    layers = [nj.layers.Flatten(input_shape=(28, 28))]
    layers += [nj.layers.Dense(args.width, activation="relu") for _ in range(args.depth)]
    layers += [nj.layers.Dense(10)]
    model = nj.Sequential(layers)
    model.compile(
        optimizer=nj.optimizers.Adam(LEARNING_RATE, epsilon=EPSILON),
        loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
        seed=seed,
    )
    return model


def nnjax_contender(args, x, y, weights, steps_per_execution: int | str):
    model = build_nnjax(args, args.seed, steps_per_execution)
    model.set_weights(weights)
    last = {}

    def run():
        model.history = nj.callbacks.History()
        history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, shuffle=True)
        last["loss"] = history.history["loss"][-1]
        return model.state.params

    return run, last, model


def dense_pairs(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """Host copies of `(kernel (in, out), bias (out,))` of every Dense layer of an nnjax model, input to output."""
    return [
        (np.array(layer.kernel[...]), np.array(layer.bias[...])) for layer in model.layers if isinstance(layer, nj.layers.Dense)
    ]


def dense_params(pairs):
    return [(jnp.asarray(kernel), jnp.asarray(bias)) for kernel, bias in pairs]


def forward(params, x):
    h = x.reshape(x.shape[0], -1)
    for kernel, bias in params[:-1]:
        h = jax.nn.relu(h @ kernel + bias)
    kernel, bias = params[-1]
    return h @ kernel + bias


def jax_contenders(args, x, y, pairs):
    """The hand-written per-step loop and the scanned-epoch ceiling, as a user would write them."""
    tx = optax.adam(LEARNING_RATE, eps=EPSILON)
    bs, n = args.batch_size, x.shape[0]
    full, rest = divmod(n, bs)

    def step(carry, xb, yb):
        params, opt_state, totals = carry

        def objective(p):
            logits = forward(p, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), logits

        (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        count = jnp.float32(xb.shape[0])
        accuracy = jnp.mean(jnp.argmax(logits, -1) == yb)
        return params, opt_state, totals + jnp.stack([loss * count, accuracy * count, count])

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step_at(carry, data_x, data_y, order, i):
        idx = jax.lax.dynamic_slice_in_dim(order, i * bs, bs)
        return step(carry, data_x[idx], data_y[idx])

    @functools.partial(jax.jit, donate_argnums=(0,))
    def step_tail(carry, data_x, data_y, order):
        idx = order[full * bs :]
        return step(carry, data_x[idx], data_y[idx])

    @functools.partial(jax.jit, donate_argnums=(0,))
    def epoch_scan(carry, data_x, data_y, order):
        def body(carry, i):
            idx = jax.lax.dynamic_slice_in_dim(order, i * bs, bs)
            return step(carry, data_x[idx], data_y[idx]), None

        carry = jax.lax.scan(body, carry, jnp.arange(full))[0]
        if rest:
            idx = order[full * bs :]
            carry = step(carry, data_x[idx], data_y[idx])
        return carry

    def fresh():
        params = dense_params(pairs)
        return [params, tx.init(params), jnp.zeros(3, jnp.float32)]

    loop_state, scan_state = {"carry": fresh()}, {"carry": fresh()}
    loop_last, scan_last = {}, {}

    def run_loop():
        data_x, data_y = jax.device_put(x), jax.device_put(y)
        for epoch in range(args.epochs):  # epochs 0..E-1 of each run, as fit(epochs=E)
            order = jnp.asarray(epoch_order(args.seed, epoch, n), jnp.int32)
            params, opt_state, _ = loop_state["carry"]
            carry = (params, opt_state, jnp.zeros(3, jnp.float32))
            for i in range(full):
                carry = step_at(carry, data_x, data_y, order, i)
            if rest:
                carry = step_tail(carry, data_x, data_y, order)
            loop_state["carry"] = carry
            totals = np.asarray(carry[2])  # the epoch's mean loss, read on the host as fit does
            loop_last["loss"] = float(totals[0] / totals[2])
        return carry

    def run_scan():
        data_x, data_y = jax.device_put(x), jax.device_put(y)
        for epoch in range(args.epochs):
            order = jnp.asarray(epoch_order(args.seed, epoch, n), jnp.int32)
            params, opt_state, _ = scan_state["carry"]
            carry = epoch_scan((params, opt_state, jnp.zeros(3, jnp.float32)), data_x, data_y, order)
            scan_state["carry"] = carry
            totals = np.asarray(carry[2])
            scan_last["loss"] = float(totals[0] / totals[2])
        return carry

    def one_step_cost():
        carry = tuple(fresh())
        return bench.step_cost(jax.jit(step), carry, jnp.asarray(x[:bs]), jnp.asarray(y[:bs]))

    return (run_loop, loop_last), (run_scan, scan_last), one_step_cost


def keras_contender(args, x, y, pairs, steps_per_execution: int):
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", "jax") != "jax":
        raise RuntimeError(f"keras is already imported with backend {os.environ.get('KERAS_BACKEND')!r}, not 'jax'")
    os.environ["KERAS_BACKEND"] = "jax"
    import keras  # noqa: PLC0415 - optional baseline, imported only here

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"keras runs on backend {keras.backend.backend()!r}, not 'jax'")
    keras.utils.set_random_seed(args.seed)
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(args.width, activation="relu") for _ in range(args.depth)]
    layers += [keras.layers.Dense(10)]
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE, epsilon=EPSILON),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    model.set_weights([array for pair in pairs for array in pair])
    last = {}

    def run():
        history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, shuffle=True)
        last["loss"] = history.history["loss"][-1]
        return None

    return run, last, keras.__version__


def torch_contender(args, x, y, pairs):
    import torch  # noqa: PLC0415 - optional baseline, imported only here

    torch.manual_seed(args.seed)
    threads = args.torch_threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    torch.set_num_threads(threads)
    modules = [torch.nn.Flatten()]
    width_in = 784
    for _ in range(args.depth):
        modules += [torch.nn.Linear(width_in, args.width), torch.nn.ReLU()]
        width_in = args.width
    modules += [torch.nn.Linear(width_in, 10)]
    model = torch.nn.Sequential(*modules)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for layer, (kernel, bias) in zip(linears, pairs, strict=True):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(kernel).T)))
            layer.bias.copy_(torch.from_numpy(np.asarray(bias)))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, eps=EPSILON)
    data_x, data_y = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    n, bs = x.shape[0], args.batch_size
    last = {}

    def run():
        for epoch in range(args.epochs):  # epochs 0..E-1 of each run, as fit(epochs=E)
            order = torch.from_numpy(epoch_order(args.seed, epoch, n))
            loss_sum = torch.zeros(())
            correct = torch.zeros(())
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                xb, yb = data_x[idx], data_y[idx]
                logits = model(xb)
                loss = torch.nn.functional.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    loss_sum += loss.detach() * idx.shape[0]
                    correct += (logits.argmax(1) == yb).sum()
            last["loss"] = float(loss_sum) / n
        return None

    return run, last, torch.__version__, threads


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=60000, help="training examples (60000 = Fashion-MNIST)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--depth", type=int, default=1, help="hidden Dense layers")
    parser.add_argument("--width", type=int, default=128, help="hidden width")
    parser.add_argument("--steps-per-execution", type=int, default=32, help="K for the *_spe contenders")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per contender per round (one training run)")
    parser.add_argument("--rounds", type=int, default=5, help="measured interleaved rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (compilation)")
    parser.add_argument("--contenders", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="PyTorch intra-op threads; 0 = all cores (OpenMP barriers crawl on an oversubscribed machine)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-cost", action="store_true", help="skip the XLA cost analysis of one step")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.contenders.split(",")) - set(ALL))
    if unknown:
        parser.error(f"--contenders: unknown {unknown}; expected names from {list(ALL)}")
    return args


def ratio(results: dict, a: str, b: str, key: str = "epoch_s"):
    """Speed of `a` relative to `b` (b's time / a's): > 1 means `a` is faster; None if either is missing."""
    ra, rb = results.get(a), results.get(b)
    if not ra or not rb or ra.get("status") != "ok" or rb.get("status") != "ok" or not ra[key]:
        return None
    return rb[key] / ra[key]


def main(argv=None):
    args = parse_args(argv)
    wanted = args.contenders.split(",")
    x, y = make_data(args.examples, args.seed)
    steps_per_epoch = -(-args.examples // args.batch_size)
    template = build_nnjax(args, args.seed, 1)
    template.build((None, 28, 28))
    weights, pairs = template.get_weights(), dense_pairs(template)
    del template

    contenders, lasts, skipped, extra, models = {}, {}, {}, {}, {}
    one_step_cost = None
    for name in wanted:
        try:
            if name in ("nnjax_fit", "nnjax_fit_spe"):
                k = "auto" if name == "nnjax_fit" else args.steps_per_execution
                run, last, model = nnjax_contender(args, x, y, weights, k)
                contenders[name], lasts[name] = run, last
                extra[name] = {"steps_per_execution": k}
                models[name] = model
            elif name in ("jax_loop", "jax_scan"):
                if "jax_loop" not in contenders and "jax_scan" not in contenders:
                    loop, scan, one_step_cost = jax_contenders(args, x, y, pairs)
                    jax_pair = {"jax_loop": loop, "jax_scan": scan}
                contenders[name], lasts[name] = jax_pair[name]
            elif name in ("keras_fit", "keras_fit_spe"):
                k = 1 if name == "keras_fit" else args.steps_per_execution
                run, last, version = keras_contender(args, x, y, pairs, k)
                contenders[name], lasts[name] = run, last
                extra[name] = {"steps_per_execution": k, "version": version}
            elif name == "torch_eager":
                run, last, version, threads = torch_contender(args, x, y, pairs)
                contenders[name], lasts[name] = run, last
                extra[name] = {"version": version, "threads": threads}
        except ImportError as e:
            skipped[name] = f"not installed: {e}"
        except RuntimeError as e:
            skipped[name] = str(e)

    # Recompilation check: after its warm-up run, no contender may compile again (epochs end in a partial batch).
    stats = bench.interleaved(contenders, rounds=args.rounds, warmup=args.warmup, on_error="record") if contenders else {}
    failed = {}
    for name, entry in stats.items():
        if "error" in entry:
            failed[name] = entry["error"]

    for name, model in models.items():  # what "auto" measured (in the warm-up run) and chose
        choice = model.fit_memory.steps(model.fit_loop.source)
        extra[name]["steps_per_execution_used"] = model.fit_loop.steps_choice.steps_per_execution
        extra[name]["steps_choice_reason"] = model.fit_loop.steps_choice.reason
        extra[name]["remembered_choice"] = choice
    steps_per_run = steps_per_epoch * args.epochs
    results = []
    for name in wanted:
        if name in skipped or name in failed:
            status = "skipped" if name in skipped else "failed"
            results.append({"name": name, "status": status, "reason": skipped.get(name) or failed[name]})
            continue
        wall, cpu = stats[name], stats[name]["cpu"]
        results.append(
            {
                "name": name,
                "status": "ok",
                "epoch_s": wall["median"] / args.epochs,
                "rel_spread": wall["rel_spread"],
                "cpu_epoch_s": cpu["median"] / args.epochs,
                "cpu_rel_spread": cpu["rel_spread"],
                "steps_per_s": steps_per_run / wall["median"],
                "us_per_step": 1e6 * wall["median"] / steps_per_run,
                "first_run_s": wall["first_s"],
                "compiles_after_warmup": wall["compiles"],
                "final_loss": lasts[name].get("loss"),
                "run_samples_s": wall["samples"],
                "run_cpu_samples_s": cpu["samples"],
                **extra.get(name, {}),
            }
        )
    by_name = {r["name"]: r for r in results}
    pairs_compared = [
        ("nnjax_fit", "jax_loop"),
        ("nnjax_fit", "jax_scan"),
        ("nnjax_fit", "keras_fit"),
        ("nnjax_fit_spe", "jax_scan"),
        ("nnjax_fit_spe", "keras_fit_spe"),
        ("nnjax_fit", "torch_eager"),
        ("jax_scan", "jax_loop"),
    ]
    ratios = {}
    for a, b in pairs_compared:
        for key, label in (("epoch_s", "wall"), ("cpu_epoch_s", "cpu")):
            value = ratio(by_name, a, b, key)
            if value is not None:
                ratios[f"{a} vs {b} ({label})"] = value
    config = {
        "examples": args.examples,
        "batch_size": args.batch_size,
        "steps_per_epoch": steps_per_epoch,
        "epochs": args.epochs,
        "depth": args.depth,
        "width": args.width,
        "steps_per_execution": args.steps_per_execution,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "seed": args.seed,
        "torch_threads": args.torch_threads,
        "unit": f"one run of {args.epochs} epochs per contender per round, data starting in host memory",
        "ratio": "median epoch time of the second over the first: > 1 means the first is faster",
    }
    notes = [
        f"{r['name']} compiled {r['compiles_after_warmup']} times after its warm-up run"
        for r in results
        if r.get("compiles_after_warmup")
    ]
    if one_step_cost is not None and not args.no_cost:
        cost = one_step_cost()
        config["flops_per_step"] = cost["flops"]
        config["step_compile_s"] = cost["compile_s"]
        fastest = min((r for r in results if r["status"] == "ok"), key=lambda r: r["epoch_s"], default=None)
        if fastest and cost["flops"]:
            config["achieved_gflops_fastest"] = cost["flops"] * steps_per_epoch / fastest["epoch_s"] / 1e9
    result = bench.make_result("mlp", results, config=config, ratios=ratios, notes=notes)
    bench.write_result(result, args.out)
    return result


if __name__ == "__main__":
    main()
