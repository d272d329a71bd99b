"""An ensemble of K models in one vmapped step against K separate `fit` calls.

Model: Flatten(8x8) -> Dense(width, relu) -> Dropout(0.1) -> Dense(10, softmax),
Adam, sparse categorical cross-entropy and accuracy, batch --batch-size, on
scikit-learn's digits (1797 images; the arrays live on the device). Member i
and separate model i use the same seed, so they do identical work (the test
suite checks they also give identical results).

Two measurements, each timed with nnjax.bench (block_until_ready, medians):

- ``steady``, for every width in --widths: already-compiled models. Per round,
  ``ensemble.fit(epochs=E)`` once against ``model_i.fit(epochs=E)`` for the K
  separate models in turn, interleaved (--rounds rounds after --warmup).
- ``cold``, for the first width: what a user waits for from nothing: build +
  compile + fit of the ensemble against K times build + compile + fit (K
  compilations against one), --cold-repeats times each.

The ensemble does the same arithmetic as the separate fits in fewer, larger
operations, so its advantage is largest for small (dispatch- and
overhead-bound) models and shrinks towards 1x as a CPU becomes compute-bound.

Run: ``python benchmarks/ensemble.py --out benchmarks/results/ensemble_cpu.json``.
Smoke run: ``python benchmarks/ensemble.py --rounds 1 --cold-repeats 1 --epochs 1``.
"""

from __future__ import annotations

import argparse

import numpy as np

import nnjax as nj
from nnjax import bench, parallel


def load_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def make_build(width: int):
    def build():
        return nj.Sequential(
            [
                nj.layers.Flatten(),
                nj.layers.Dense(width, activation="relu"),
                nj.layers.Dropout(0.1),
                nj.layers.Dense(10, activation="softmax"),
            ]
        )

    return build


COMPILE = dict(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def new_ensemble(args, build):
    ensemble = parallel.Ensemble(build, size=args.members)
    ensemble.compile(**COMPILE, steps_per_execution=args.steps_per_execution)
    return ensemble


def new_separate(args, build):
    models = []
    for seed in range(args.members):
        nj.utils.set_random_seed(seed)
        model = build()
        model.compile(**COMPILE, steps_per_execution=args.steps_per_execution, seed=seed)
        model.build((None, 8, 8))  # now, as the ensemble member with this seed is built
        models.append(model)
    return models


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--widths", default="32,128,512", help="hidden widths to measure (steady); the first also cold")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per contender per round")
    parser.add_argument("--steps-per-execution", type=lambda v: v if v == "auto" else int(v), default="auto",
                        help='"auto" (fit measures and keeps the fastest, the default) or an int')
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)

    x, y = load_data()
    widths = [int(w) for w in args.widths.split(",")]
    fit = dict(batch_size=args.batch_size, epochs=args.epochs, verbose=0)
    steps = args.epochs * -(-len(x) // args.batch_size)
    results, ratios = [], {}

    def record(name, width, stats):
        results.append(
            {
                "name": name,
                "width": width,
                "seconds": stats["median"],
                "rel_spread": stats["rel_spread"],
                "samples": stats["samples"],
                "member_steps_per_second": args.members * steps / stats["median"],
            }
        )

    for width in widths:
        build = make_build(width)
        ensemble, separate = new_ensemble(args, build), new_separate(args, build)
        steady = bench.interleaved(
            {
                "ensemble": lambda ensemble=ensemble: ensemble.fit(x, y, **fit),
                "separate": lambda separate=separate: [model.fit(x, y, **fit) for model in separate],
            },
            rounds=args.rounds,
            warmup=args.warmup,
        )
        for name in ("ensemble", "separate"):
            record(f"{name}_steady", width, steady[name])
        ratios[f"ensemble vs separate (steady, width {width})"] = steady["separate"]["median"] / steady["ensemble"]["median"]

    build = make_build(widths[0])
    cold = {
        "ensemble": bench.time_fn(lambda: new_ensemble(args, build).fit(x, y, **fit), warmup=0, repeats=args.cold_repeats),
        "separate": bench.time_fn(
            lambda: [model.fit(x, y, **fit) for model in new_separate(args, build)], warmup=0, repeats=args.cold_repeats
        ),
    }
    for name in ("ensemble", "separate"):
        record(f"{name}_cold", widths[0], cold[name])
    ratios[f"ensemble vs separate (cold: build+compile+fit, width {widths[0]})"] = (
        cold["separate"]["median"] / cold["ensemble"]["median"]
    )
    config = {**vars(args), "examples": len(x), "steps_per_member": steps}
    notes = [
        "ratios > 1: the ensemble is that many times faster than the separate fits of the same members",
        "steady: models already compiled; cold: includes building and compiling (K compilations against one)",
    ]
    result = bench.make_result("ensemble", results, config=config, ratios=ratios, notes=notes, argv=argv)
    return bench.write_result(result, args.out)


if __name__ == "__main__":
    main()
