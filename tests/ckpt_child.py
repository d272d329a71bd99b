"""Child process for the checkpoint tests: trains a tiny model with `BackupAndRestore`, or saves/restores a state.

The parent sets the environment (one CPU device, XLA on one thread) and kills,
signals or restarts this process. Every training step appends
`step <state.step> <epoch> <batch> <loss as float.hex()>` to the log; the first
step after a start appends `restored <step or None>` before it.

Usage:
  python ckpt_child.py train --backup DIR --log FILE --out WEIGHTS.npz [--save-freq N|epoch] [--sync] [--no-backup] [--ensemble M]
  python ckpt_child.py save-state --path DIR --out LEAVES.npz
  python ckpt_child.py restore-state --path DIR --expect LEAVES.npz
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

NUM_EXAMPLES, FEATURES, CLASSES, BATCH, EPOCHS = 108, 6, 4, 8, 3  # 14 steps per epoch (the last one of 4 examples), 42 in all


def build_model(nj, ensemble: int = 0):
    """The child's model; with `ensemble=M`, an `nj.parallel.Ensemble` of M such models (seeds 7, 8, ...)."""
    if ensemble:
        def member():
            return nj.Sequential([nj.layers.Dense(16, activation="relu"), nj.layers.Dropout(0.25),
                                  nj.layers.Dense(CLASSES, activation="softmax")])

        model = nj.parallel.Ensemble(member, size=ensemble, seeds=[7 + i for i in range(ensemble)])
        model.compile(optimizer=nj.optimizers.Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy")
        model.build((None, FEATURES))
        return model
    nj.utils.set_random_seed(0)
    model = nj.Sequential([nj.layers.Dense(16, activation="relu"), nj.layers.Dropout(0.25), nj.layers.Dense(CLASSES, activation="softmax")])
    model.build((None, FEATURES))
    model.compile(optimizer=nj.optimizers.Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy", seed=7)
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(NUM_EXAMPLES, FEATURES)).astype(np.float32)
    y = (np.abs(x[:, :CLASSES]).argmax(axis=1)).astype(np.int32)
    return x, y


def leaves_of(state):
    import jax

    return {f"leaf_{i}": np.asarray(jax.device_get(leaf)) for i, leaf in enumerate(jax.tree.leaves(state))}


def train(args, nj) -> None:
    import jax

    class StepLog(nj.callbacks.Callback):
        def __init__(self, path, backup):
            super().__init__()
            self.file = open(path, "a", encoding="utf-8")
            self.backup = backup
            self.first = True

        def on_train_batch_end(self, batch, logs=None):
            if self.first:
                self.first = False
                self.file.write(f"restored {None if self.backup is None else self.backup.restored_step}\n")
            step = int(np.asarray(jax.device_get(self.model.state.step)).reshape(-1)[0])  # an ensemble's members share it
            pos = self.model.fit_loop.state.position
            self.file.write(f"step {step} {pos['epoch']} {pos['step']} {float(logs['loss']).hex()}\n")
            self.file.flush()

    model = build_model(nj, args.ensemble)
    x, y = data()
    save_freq = args.save_freq if args.save_freq == "epoch" else int(args.save_freq)
    backup = None if args.no_backup else nj.callbacks.BackupAndRestore(args.backup, save_freq=save_freq, async_save=not args.sync)
    callbacks = [StepLog(args.log, backup)] + ([] if backup is None else [backup])
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    np.savez(args.out, *model.get_weights())
    with open(args.log, "a", encoding="utf-8") as f:
        f.write("done\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "save-state", "restore-state"])
    parser.add_argument("--backup")
    parser.add_argument("--log")
    parser.add_argument("--out")
    parser.add_argument("--path")
    parser.add_argument("--expect")
    parser.add_argument("--save-freq", default="3")
    parser.add_argument("--sync", action="store_true")
    parser.add_argument("--no-backup", action="store_true")
    parser.add_argument("--ensemble", type=int, default=0, help="train an Ensemble of this many members")
    args = parser.parse_args()

    import jax

    if jax.device_count() != 1:
        sys.exit(f"ckpt_child: expected exactly 1 device; got {jax.device_count()} (XLA_FLAGS={os.environ.get('XLA_FLAGS')!r})")
    import nnjax as nj

    if args.mode == "train":
        train(args, nj)
    elif args.mode == "save-state":
        model = build_model(nj)
        x, y = data()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        nj.checkpoint.save(args.path, model.state)
        np.savez(args.out, **leaves_of(model.state))
    else:
        model = build_model(nj)
        state = nj.checkpoint.restore(args.path, model.state)
        expected = np.load(args.expect)
        got = leaves_of(state)
        assert sorted(got) == sorted(expected.files), (sorted(got), expected.files)
        for name in expected.files:
            assert got[name].dtype == expected[name].dtype and np.array_equal(got[name].reshape(-1).view(np.uint8), expected[name].reshape(-1).view(np.uint8)), name
        devices = {d for leaf in jax.tree.leaves(state) for d in leaf.devices()}
        assert devices == {jax.devices()[0]}, devices
        print("restored-ok", len(got))


if __name__ == "__main__":
    main()
