"""Explicit per-device training: the core's `train_step` under `jax.shard_map` (or `jax.pmap`) with `lax.pmean` gradients.

Every device runs the unchanged `nj.train.train_step` on its shard of the
batch; `nj.parallel.pmean_gradients` wraps the optimizer so the gradients are
averaged across devices first (`lax.pmean`). The script trains the same model
three ways, with `shard_map`, with `pmap`, and with
`compile(distribution=DataParallel())`, and prints how far apart they end up
(float rounding only).

    python examples/shard_map.py --cpu-devices 8

The heart of it, by hand:

    per_device = functools.partial(nj.parallel.data_parallel_step, axis_name="data")
    step = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")),
                                 out_specs=(P(), P()), check_vma=False))
    state, metrics = step(state, (x_batch, y_batch))
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

# Configuration.
EPOCHS = 3
BATCH_SIZE = 64  # global batch; each device gets BATCH_SIZE / devices
SEED = 0


def load_data():
    """scikit-learn's 8x8 digits: x of shape (1797, 8, 8) in [0, 1], integer labels (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def make_model(distribution=None):
    """A compiled, built MLP; its `state` is the initial `TrainState`."""
    import nnjax as nj

    nj.utils.set_random_seed(SEED)
    model = nj.Sequential(
        [nj.layers.Flatten(), nj.layers.Dense(64, activation="relu"), nj.layers.Dense(10, activation="softmax")]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", distribution=distribution, seed=SEED)
    model.build((None, 8, 8))
    return model


def batches(x, y, epoch):
    """The batches `fit` draws in `epoch` (same seed, same order), whole batches only."""
    import nnjax as nj

    source = nj.data.ArraySource(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=SEED, drop_remainder=True)
    return [(bx, by) for bx, by, _ in source.batches(epoch)]


def train_shard_map(x, y, epochs: int):
    """`jax.shard_map` over a 1-D mesh of every device; returns `(losses, params)`."""
    import jax

    from nnjax import parallel

    mesh = parallel.make_mesh(axis_names=("data",))
    state = parallel.DataParallel(mesh).place_state(make_model().state)  # replicated on every device
    step = parallel.shard_map_train_step(mesh, axis_name="data")
    losses = []
    for epoch in range(epochs):
        epoch_losses = []
        for batch in batches(x, y, epoch):
            state, metrics = step(state, batch)
            epoch_losses.append(float(metrics["loss"]))
        losses.append(float(np.mean(epoch_losses)))
    return losses, jax.tree.leaves(state.params)


def train_pmap(x, y, epochs: int):
    """`jax.pmap`: the state carries a leading device axis; each device takes `B / n` examples."""
    import jax

    from nnjax import parallel

    n = jax.local_device_count()
    state = jax.tree.map(lambda a: np.broadcast_to(np.asarray(a), (n,) + np.shape(a)), make_model().state)
    step = jax.pmap(functools.partial(parallel.data_parallel_step, axis_name="data"), axis_name="data")
    losses = []
    for epoch in range(epochs):
        epoch_losses = []
        for batch in batches(x, y, epoch):
            state, metrics = step(state, jax.tree.map(lambda a: a.reshape((n, -1) + a.shape[1:]), batch))
            epoch_losses.append(float(metrics["loss"][0]))
        losses.append(float(np.mean(epoch_losses)))
    return losses, [leaf[0] for leaf in jax.tree.leaves(state.params)]


def train_data_parallel(x, y, epochs: int):
    """The same training with `compile(distribution=DataParallel())`."""
    import jax

    from nnjax import parallel

    model = make_model(parallel.DataParallel())
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, steps_per_epoch=len(x) // BATCH_SIZE, verbose=0)
    return history.history["loss"], jax.tree.leaves(model.state.params)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--cpu-devices", type=int, default=None, help="run on this many CPU devices (before JAX starts)")
    args = parser.parse_args(argv)

    import jax

    if args.cpu_devices:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    x, y = load_data()
    print(f"{jax.device_count()} devices, {BATCH_SIZE // jax.device_count()} examples per device per step")
    results = {
        name: fn(x, y, args.epochs)
        for name, fn in (("shard_map", train_shard_map), ("pmap", train_pmap), ("data_parallel", train_data_parallel))
    }
    reference_losses, reference_params = results["data_parallel"]
    report = {}
    for name, (losses, params) in results.items():
        loss_diff = float(np.max(np.abs(np.asarray(losses) - reference_losses)))
        param_diff = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(params, reference_params, strict=True)
        )
        print(
            f"{name:>13}: losses {np.round(losses, 5).tolist()}; vs DataParallel: loss {loss_diff:.1e}, params {param_diff:.1e}"
        )
        report[name] = {"losses": losses, "loss_diff": loss_diff, "param_diff": param_diff}
    return report


if __name__ == "__main__":
    main()
