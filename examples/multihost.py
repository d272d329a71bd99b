"""Data-parallel training over several processes or machines with `jax.distributed`.

The same script runs on one process or many. Each process loads the same data,
`nj.parallel.initialize` joins the job, and `DataParallel()` then spans every
device of every process: the batch is split over all of them and XLA averages
the gradients across hosts (NCCL on GPUs, gloo between CPU processes).

One process (all local devices):

    python examples/multihost.py

Two local processes with 2 CPU devices each (4 devices in all), in two shells
(or with `&`), any free port:

    python examples/multihost.py --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0 --cpu-devices 2
    python examples/multihost.py --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 1 --cpu-devices 2

Two machines (say 10.0.0.1 and 10.0.0.2, the port open between them), one
command on each:

    python examples/multihost.py --coordinator 10.0.0.1:12355 --num-processes 2 --process-id 0   # on 10.0.0.1
    python examples/multihost.py --coordinator 10.0.0.1:12355 --num-processes 2 --process-id 1   # on 10.0.0.2

On a SLURM or Open MPI cluster, drop the three flags: `initialize()` reads them
from the environment. Process 0 prints the per-epoch losses as JSON; `--out`
writes them (with the final weights) to a file from every process.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

# Configuration (all defaults are what the test uses).
EPOCHS = 3  # passes over the data
BATCH_SIZE = 64  # global batch, split over every device of every process
SEED = 0  # initialisation and shuffling


def load_data():
    """scikit-learn's 8x8 digits: x of shape (1797, 8, 8) in [0, 1], integer labels (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def train(distribution=None, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE, seed: int = SEED):
    """Trains a small MLP on the digits with `distribution`.

    Returns:
      `(losses, weights)`: the per-epoch training losses and the final weights as NumPy arrays.
    """
    import nnjax as nj
    from nnjax import parallel  # noqa: F401 - nj.parallel

    x, y = load_data()
    nj.utils.set_random_seed(seed)
    model = nj.Sequential(
        [
            nj.layers.Flatten(),
            nj.layers.Dense(64, activation="relu"),
            nj.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], distribution=distribution, seed=seed
    )
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return history.history["loss"], model.get_weights()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--cpu-devices", type=int, default=None, help="CPU devices per process (testing without accelerators)")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--timeout", type=int, default=120, help="seconds to wait for the other processes")
    parser.add_argument("--out", default=None, help="write losses and weights to this JSON file")
    args = parser.parse_args(argv)

    import jax

    import nnjax as nj
    from nnjax import parallel  # noqa: F401 - nj.parallel

    nj.parallel.initialize(
        args.coordinator, args.num_processes, args.process_id, cpu_devices=args.cpu_devices, initialization_timeout=args.timeout
    )
    try:
        losses, weights = train(nj.parallel.DataParallel(), epochs=args.epochs)
        result = {
            "process_index": jax.process_index(),
            "process_count": jax.process_count(),
            "global_devices": jax.device_count(),
            "local_devices": jax.local_device_count(),
            "loss": [float(v) for v in losses],
        }
        if nj.parallel.is_main_process():
            print(json.dumps(result))
        if args.out:
            with open(args.out, "w") as f:
                json.dump({**result, "weights": [w.tolist() for w in weights]}, f)
    finally:
        nj.parallel.shutdown()


if __name__ == "__main__":
    main()
