"""Kill harness for checkpoint overwrites: a fork server whose children overwrite one checkpoint path until SIGKILLed.

The server imports nnjax once (no JAX backend yet), then for each round forks a
child and SIGKILLs it at a random moment of its save loop. Each child first loads
what is at the path (what the previous kill left) and logs it, then overwrites
the path again and again, logging `saving <digest>` before and `saved <digest>`
after each save. The digest is the SHA-256 of the model's weights, so the test
can tell which save a loaded checkpoint came from. The last round is not killed:
it loads, overwrites once more and exits.

Modes: `save` overwrites with `nj.checkpoint.save(path, tree, overwrite=True)` (what
`Model.save_weights` calls); `model_checkpoint` trains with a fixed-path
`ModelCheckpoint(save_freq=1)` and loads with `Model.load_weights`.

Usage:
  python ckpt_overwrite_child.py save|model_checkpoint ROOT KILLS SEED
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
import time

import numpy as np


def digest(model) -> str:
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


SHAPE = (256, 512)  # 0.5 MB: a save takes long enough to be caught mid-way


def build(nj, seed: int):
    nj.utils.set_random_seed(seed)
    model = nj.Sequential([nj.layers.Dense(64, activation="relu"), nj.layers.Dense(4, activation="softmax")])
    model.build((None, 6))
    model.compile(optimizer=nj.optimizers.Adam(learning_rate=3e-3), loss="sparse_categorical_crossentropy", seed=seed)
    return model


def child(nj, mode: str, path: str, log_fd: int, round_index: int, final: bool) -> None:
    def log(line: str) -> None:
        os.write(log_fd, f"{round_index} {line}\n".encode())

    try:
        if mode == "save":
            w = np.asarray(nj.checkpoint.restore(path, {"w": np.zeros(SHAPE, np.float32)})["w"])
            log(f"loaded {int(w[0, 0])}" if (w == w[0, 0]).all() else "loaded MIXED")
        else:
            probe = build(nj, seed=0)
            probe.load_weights(path)
            log(f"loaded {digest(probe)}")
    except FileNotFoundError:
        log("loaded none")
    except Exception as err:  # the test reports it
        log(f"loaded ERROR {type(err).__name__}: {str(err)[:300]!r}")
    if final:  # one more overwrite: it completes or rolls back what the last kill interrupted, and cleans up
        if mode == "save":
            nj.checkpoint.save(path, {"w": np.full(SHAPE, 0, np.float32)}, overwrite=True)
        else:
            build(nj, seed=0).save_weights(path)
        log("final-save done")
        return
    if mode == "save":
        for k in range(1000 * round_index + 1, 10**6):
            log(f"saving {k}")
            nj.checkpoint.save(path, {"w": np.full(SHAPE, k, np.float32)}, overwrite=True)
            log(f"saved {k}")
    else:
        model = build(nj, seed=1000 + round_index)

        class Before(nj.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                log(f"saving {digest(self.model)}")

        class After(nj.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                log(f"saved {digest(self.model)}")

        rng = np.random.default_rng(round_index)
        x = rng.normal(size=(64, 6)).astype(np.float32)
        y = np.abs(x[:, :4]).argmax(axis=1).astype(np.int32)
        checkpoint = nj.callbacks.ModelCheckpoint(path, save_weights_only=True, save_freq=1, monitor="loss")
        model.fit(x, y, batch_size=8, epochs=1000, verbose=0, callbacks=[Before(), checkpoint, After()])


def main() -> None:
    mode, root, kills, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import nnjax as nj  # no JAX computation before the forks: each child starts its own backend

    path = os.path.join(root, "ckpt")
    log_path = os.path.join(root, "log")
    rng = random.Random(seed)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for r in range(kills + 1):
        final = r == kills
        pid = os.fork()
        if pid == 0:
            try:
                child(nj, mode, path, log_fd, r, final)
            except BaseException as err:  # noqa: BLE001 - reported through the log, then a hard exit
                os.write(log_fd, f"{r} crashed {type(err).__name__}: {err!r}\n".encode())
                os._exit(1)
            os._exit(0)
        if not final:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with open(log_path) as f:
                    if any(line.startswith(f"{r} saved ") for line in f):
                        break
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    sys.exit(f"round {r}: the child exited before saving")
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.35))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            left = sorted(os.listdir(root))
            os.write(log_fd, f"{r} killed {' '.join(left)}\n".encode())
        else:
            _, status = os.waitpid(pid, 0)
            if status != 0:
                sys.exit(f"the final round exited with status {status}")
    os.close(log_fd)


if __name__ == "__main__":
    main()
