"""Data parallelism (and FSDP) with one argument: `compile(..., distribution=nj.parallel.DataParallel())`.

The batch is split over every device, parameters are replicated (or, with
`--strategy fsdp`, split so each device holds 1/N of every large array), and XLA
averages the gradients. The script trains the same model on one device and on
all of them and prints both loss curves: they agree to float precision,
BatchNorm included (its statistics are computed over the global batch).

On a machine with several accelerators:

    python examples/data_parallel.py
    python examples/data_parallel.py --strategy fsdp

On a CPU, pretend to have 8 devices:

    python examples/data_parallel.py --cpu-devices 8
"""

from __future__ import annotations

import argparse

import numpy as np

# Configuration.
EPOCHS = 5
BATCH_SIZE = 128  # the global batch: a multiple of the device count
SEED = 0


def load_data():
    """scikit-learn's 8x8 digits: x of shape (1797, 8, 8) in [0, 1], integer labels (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def train(distribution, epochs: int = EPOCHS):
    """Trains a BatchNorm MLP; returns `(per-epoch losses, model)`."""
    import nnjax as nj

    x, y = load_data()
    nj.utils.set_random_seed(SEED)
    model = nj.Sequential(
        [
            nj.layers.Flatten(),
            nj.layers.Dense(256, use_bias=False),
            nj.layers.BatchNormalization(),
            nj.layers.Activation("relu"),
            nj.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", distribution=distribution, seed=SEED)
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0)
    return history.history["loss"], model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=["data", "fsdp"], default="data")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--cpu-devices", type=int, default=None, help="run on this many CPU devices (before JAX starts)")
    args = parser.parse_args(argv)

    import jax

    if args.cpu_devices:
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    from nnjax import parallel

    strategy = parallel.DataParallel() if args.strategy == "data" else parallel.FSDP()
    print(f"{strategy}: {jax.device_count()} devices, {BATCH_SIZE // strategy.num_replicas} examples per device per step")
    one_losses, one_model = train(None, args.epochs)
    losses, model = train(strategy, args.epochs)
    for epoch, (a, b) in enumerate(zip(one_losses, losses, strict=True)):
        print(f"epoch {epoch + 1}: loss on 1 device {a:.6f}, on {strategy.num_replicas} devices {b:.6f}")
    weight_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one_model.get_weights(), model.get_weights(), strict=True))
    print(f"largest weight difference: {weight_diff:.2e}")
    kernel = model.state.params["layers"][1]["kernel"][...]
    shard_shapes = sorted({tuple(s.data.shape) for s in kernel.addressable_shards})
    print(f"first kernel {tuple(kernel.shape)}: each device holds {shard_shapes}")
    return {"losses": losses, "one_device_losses": one_losses, "weight_diff": weight_diff, "shard_shapes": shard_shapes}


if __name__ == "__main__":
    main()
