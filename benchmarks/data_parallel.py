"""`fit` on one device against `DataParallel` and `FSDP` over every device: time per epoch and agreement.

Model: Flatten(28x28) -> Dense(--width, relu) -> Dense(--width, relu) -> Dense(10)
logits, Adam, sparse categorical cross-entropy, batch --batch-size, on
synthetic MNIST-shaped data (labels from a random linear teacher) held on the
device. All contenders start from the same weights and visit the same batches;
after the timed rounds the script checks their weights agree (the test suite
asserts it to 1e-5).

Contenders (already compiled, timed in interleaved rounds with nnjax.bench):
``one_device`` (no distribution), ``data_parallel`` (parameters replicated,
batch split), ``fsdp`` (parameters and Adam moments split as well).

By default the "devices" are 8 forced CPU devices (``--cpu-devices 8``) that
share the same cores, so this measures the cost of SPMD partitioning and
collectives, not a speed-up; with ``--cpu-devices 0`` on a machine with several
accelerators it measures the speed-up.

Run: ``python benchmarks/data_parallel.py --out benchmarks/results/data_parallel_cpu.json``.
Smoke run: ``python benchmarks/data_parallel.py --examples 1024 --rounds 1``.
"""

from __future__ import annotations

import argparse
import os


def make_data(n: int, seed: int = 0):
    """x float32 (n, 28, 28) in [0, 1]; y int32 (n,) in [0, 10) from a random linear teacher."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28), dtype=np.float32)
    teacher = rng.standard_normal((784, 10)).astype(np.float32)
    return x, np.argmax((x.reshape(n, -1) - 0.5) @ teacher, axis=1).astype(np.int32)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=8192)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per contender per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--cpu-devices", type=int, default=8, help="run on this many forced CPU devices; 0: the machine's own devices"
    )
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)

    import jax
    import numpy as np

    if args.cpu_devices:  # before any JAX computation
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)

    import nnjax as nj
    from nnjax import bench, parallel

    x, y = make_data(args.examples)
    strategies = {"one_device": None, "data_parallel": parallel.DataParallel(), "fsdp": parallel.FSDP()}
    models = {}
    for name, strategy in strategies.items():
        nj.utils.set_random_seed(0)
        model = nj.Sequential(
            [
                nj.layers.Flatten(),
                nj.layers.Dense(args.width, activation="relu"),
                nj.layers.Dense(args.width, activation="relu"),
                nj.layers.Dense(10),
            ]
        )
        model.compile(
            optimizer="adam", loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), distribution=strategy, seed=0
        )
        model.build((None, 28, 28))  # now: a lazy build would draw its weights from the global seed later
        models[name] = model
    stats = bench.interleaved(
        {
            name: (lambda m=model: m.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0))
            for name, model in models.items()
        },
        rounds=args.rounds,
        warmup=args.warmup,
    )
    reference = models["one_device"].get_weights()
    steps = args.epochs * -(-args.examples // args.batch_size)
    results = []
    for name, model in models.items():
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), reference, strict=True))
        s = stats[name]
        results.append(
            {
                "name": name,
                "devices": 1 if strategies[name] is None else strategies[name].num_replicas,
                "seconds_per_epoch": s["median"] / args.epochs,
                "rel_spread": s["rel_spread"],
                "examples_per_second": args.examples * args.epochs / s["median"],
                "ms_per_step": 1000 * s["median"] / steps,
                "max_weight_diff_vs_one_device": diff,
            }
        )
    ratios = {
        f"{name} vs one_device": stats["one_device"]["median"] / stats[name]["median"] for name in ("data_parallel", "fsdp")
    }
    notes = ["ratios > 1: faster than one device"]
    if args.cpu_devices:
        notes.append(
            f"{jax.device_count()} forced CPU devices share {os.cpu_count()} cores: this measures SPMD overhead, expect ratios < 1"
        )
    config = {**vars(args), "device_count": jax.device_count()}
    return bench.write_result(
        bench.make_result("data_parallel", results, config=config, ratios=ratios, notes=notes, argv=argv), args.out
    )


if __name__ == "__main__":
    main()
