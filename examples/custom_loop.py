"""A hand-written training loop from nnjax's functional core.

The same `TrainState` and pure `train_step` / `eval_step` that `Model.fit`
compiles, driven by a plain Python loop under `jax.jit`: no nnjax object in the
way, so the loop can be changed freely (here: a cosine learning-rate schedule
and a per-epoch evaluation).

    python examples/custom_loop.py --epochs 10
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np
import optax

import nnjax as nj
from nnjax import train


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    return train_test_split(x, data.target.astype(np.int32), test_size=0.2, random_state=0, stratify=data.target)


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    x_train, x_test, y_train, y_test = load_data()
    steps_per_epoch = len(x_train) // args.batch_size

    # A model is a Flax NNX module; build it once from the input shape.
    module = nj.layers.SequentialModule([
        nj.layers.Flatten(),
        nj.layers.Dense(128, activation="relu"),
        nj.layers.Dropout(0.1),
        nj.layers.Dense(10),
    ])
    module.ensure_built((1, 8, 8), key=jax.random.PRNGKey(args.seed))

    schedule = optax.cosine_decay_schedule(3e-3, decay_steps=args.epochs * steps_per_epoch)
    state = train.TrainState.create(
        module,
        optax.adam(schedule),
        loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        key=args.seed,
    )
    train_step = jax.jit(train.train_step)
    eval_step = jax.jit(train.eval_step)

    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(len(x_train))
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size:(i + 1) * args.batch_size]
            state, metrics = train_step(state, (x_train[idx], y_train[idx]))
            losses.append(metrics["loss"])
        test_metrics = jax.device_get(eval_step(state, (x_test, y_test)))
        print(
            f"epoch {epoch + 1}/{args.epochs}: train loss {float(np.mean(jax.device_get(losses))):.4f}, "
            f"test loss {test_metrics['loss']:.4f}, test accuracy {test_metrics['accuracy']:.4f}"
        )
    return float(test_metrics["accuracy"])


if __name__ == "__main__":
    main(sys.argv[1:])
