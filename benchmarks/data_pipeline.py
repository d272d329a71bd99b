"""What the input pipeline costs: training steps/s fed by `nj.data.tfds` against in-memory arrays.

Model: the seed MLP, Flatten(28x28) -> Dense(128, relu) -> Dense(10, softmax), Adam,
sparse categorical cross-entropy with accuracy, batch 128. Data: Fashion-MNIST from TFDS
(`tfds.data_source`, array_record, no TensorFlow); with ``--mock`` (the default when the
dataset is not prepared locally) `tfds.testing.mock_data` fakes the same 28x28 uint8
images, so the numbers measure the pipeline, not the data.

Contenders, each timed as whole ``fit(epochs=3)`` calls in interleaved rounds after a warm-up
call (compilation and the one-off decode into the host cache are reported apart; a fit call
also includes its setup, e.g. copying the in-memory arrays to the device, as a user's does):

- ``in_memory``: ``model.fit(x, y, batch_size=128)`` on float32 arrays: the shell keeps
  them on the device and shuffles and slices there (the fastest path there is).
- ``tfds_pipeline``: ``model.fit(nj.data.tfds("fashion_mnist", batch_size=128,
  batch_transform=to_float))``: per-epoch shuffle from (seed, epoch), host batch
  assembly from the decoded cache, uint8 -> float32 on the host, prefetch to the device
  on a background thread (double buffering).

- ``pipeline_only``: the pipeline without training: every batch read, converted and put
  on the device (its capacity, to compare with the rate training consumes batches).

Both trainers run the same number of steps per epoch with the same ``steps_per_execution``.
The pipeline's cost is ``1 - steps/s(tfds_pipeline) / steps/s(in_memory)`` (target < 5%).

Run: ``python benchmarks/data_pipeline.py --out benchmarks/results/data_pipeline_cpu.json``.
Smoke run: ``python benchmarks/data_pipeline.py --examples 2048 --rounds 1``.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import jax
import numpy as np

import nnjax as nj
import nnjax.datasets
from nnjax import bench


def to_float(batch):
    """uint8 images (B, 28, 28, 1) -> float32 (B, 28, 28) in [0, 1]; labels unchanged."""
    images, labels, _ = batch
    return np.multiply(images.reshape(images.shape[:3]), np.float32(1 / 255), dtype=np.float32), labels


def read_epochs(pipeline, epochs: int):
    """The pipeline alone: every batch of `epochs` epochs read, converted and copied to the device."""
    placed = None
    for epoch in range(epochs):
        for batch in pipeline.batches(epoch):
            placed = jax.device_put(batch)
    return placed


def build(seed: int, steps_per_execution: int):
    model = nj.Sequential(
        [
            nj.layers.Flatten(input_shape=(28, 28)),
            nj.layers.Dense(128, activation="relu"),
            nj.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        seed=seed,
        steps_per_execution=steps_per_execution,
    )
    return model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=60000, help="examples per epoch (mock data only)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit call (one timed unit)")
    parser.add_argument("--rounds", type=int, default=5, help="timed fit calls per contender")
    parser.add_argument("--mock", choices=("auto", "yes", "no"), default="auto", help="fake the data with tfds.testing.mock_data")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)

    import tensorflow_datasets as tfds

    mock = args.mock == "yes"
    if args.mock == "auto":
        try:
            nj.data.tfds("fashion_mnist", split="train", download=False)
        except nj.data.DatasetUnavailableError:
            mock = True
    context = tfds.testing.mock_data(num_examples=args.examples) if mock else contextlib.nullcontext()
    with context:
        start = time.perf_counter()
        pipeline = nj.data.tfds("fashion_mnist", split="train", batch_size=args.batch_size, seed=0, batch_transform=to_float)
        first = pipeline.iterator()
        next(first)  # decodes the split into the host cache
        first.close()
        cache_s = time.perf_counter() - start
        (x_uint8, y), _ = nj.datasets.fashion_mnist.load_data()  # the same examples, for the in-memory contender
        x, y = to_float((x_uint8[..., None], y.astype(np.int32), None))

        models = {"in_memory": build(0, args.steps_per_execution), "tfds_pipeline": build(0, args.steps_per_execution)}
        contenders = {
            "in_memory": lambda: bench.block(
                models["in_memory"].fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
                and models["in_memory"].state.params
            ),
            "tfds_pipeline": lambda: bench.block(
                models["tfds_pipeline"].fit(pipeline, epochs=args.epochs, verbose=0) and models["tfds_pipeline"].state.params
            ),
        }
        contenders["pipeline_only"] = lambda: bench.block(read_epochs(pipeline, args.epochs))
        stats = bench.interleaved(contenders, rounds=args.rounds, warmup=1)
    steps = pipeline.steps_per_epoch * args.epochs
    results = []
    for name, s in stats.items():
        results.append(
            {
                "name": name,
                "steps_per_s": steps / s["median"],
                "steps_per_s_best": steps / s["min"],
                "seconds": s,
                "steps_per_call": steps,
            }
        )
    by_name = {r["name"]: r for r in results}
    memory, streamed, alone = by_name["in_memory"], by_name["tfds_pipeline"], by_name["pipeline_only"]
    cost = 1.0 - streamed["steps_per_s"] / memory["steps_per_s"]
    result = bench.make_result(
        "data_pipeline",
        results,
        config={
            "examples": pipeline.num_examples,
            "batch_size": args.batch_size,
            "steps_per_execution": args.steps_per_execution,
            "epochs_per_fit": args.epochs,
            "rounds": args.rounds,
            "mock_data": mock,
            "host_cache_build_s": cache_s,
            "devices": str(jax.devices()),
        },
        ratios={
            "pipeline_cost": cost,
            "pipeline_cost_best": 1.0 - streamed["steps_per_s_best"] / memory["steps_per_s_best"],
            "pipeline_headroom": alone["steps_per_s"] / memory["steps_per_s"],
        },
        notes=[
            "pipeline_cost = 1 - steps/s(tfds_pipeline) / steps/s(in_memory) (medians; _best: fastest calls); target < 0.05",
            "pipeline_headroom = batches/s the pipeline alone delivers to the device / steps/s of in-memory training",
        ],
    )
    return bench.write_result(result, args.out)


if __name__ == "__main__":
    main()
