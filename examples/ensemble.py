"""Eight models in one compiled step: a seed ensemble, and a learning-rate sweep, with `jax.vmap`.

`nj.parallel.Ensemble` stacks the members' `TrainState`s and runs the core's
`train_step` under `jax.vmap`: one program trains every member, each with its
own initialisation, dropout masks, BatchNorm statistics and data order. Member
`i` is exactly the model `set_random_seed(i); build(); compile(seed=i); fit()`
would train alone.

    python examples/ensemble.py                       # 8 seeds; averaging their predictions
    python examples/ensemble.py --sweep               # 4 learning rates from one initialisation
    python examples/ensemble.py --plot ensemble.png   # mean ± spread of the curves
"""

from __future__ import annotations

import argparse

import numpy as np

import nnjax as nj
from nnjax import parallel

# Configuration (defaults train in a few seconds on a laptop CPU).
SIZE = 8  # ensemble members
EPOCHS = 10
BATCH_SIZE = 64
SWEEP_RATES = (3e-4, 1e-3, 3e-3, 1e-2)  # --sweep: one member per learning rate


def load_data():
    """scikit-learn's 8x8 digits, split 80/20: images (N, 8, 8) in [0, 1], labels (N,)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    return train_test_split(x, data.target.astype(np.int32), test_size=0.2, random_state=0, stratify=data.target)


def build():
    """One member; called once per member after `nj.utils.set_random_seed(seed)`."""
    return nj.Sequential(
        [
            nj.layers.Flatten(),
            nj.layers.Dense(64, use_bias=False),
            nj.layers.BatchNormalization(),
            nj.layers.Activation("relu"),
            nj.layers.Dropout(0.2),
            nj.layers.Dense(10, activation="softmax"),
        ]
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--sweep", action="store_true", help="members differ by learning rate instead of seed")
    parser.add_argument("--plot", default="", help="write the curves (mean ± std, every member) to this PNG")
    args = parser.parse_args(argv)
    x_train, x_test, y_train, y_test = load_data()

    if args.sweep:
        ensemble = parallel.Ensemble(build, size=len(SWEEP_RATES), seeds=0)  # one initialisation, one data order
        ensemble.compile(
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            hyperparams={"learning_rate": list(SWEEP_RATES)},
        )
    else:
        ensemble = parallel.Ensemble(build, size=args.size)  # seeds 0 .. size-1
        ensemble.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = ensemble.fit(
        x_train, y_train, batch_size=BATCH_SIZE, epochs=args.epochs, verbose=2, validation_data=(x_test, y_test)
    )

    loss, accuracy = ensemble.evaluate(x_test, y_test, verbose=0)  # one value per member
    labels = [f"lr={r:g}" for r in SWEEP_RATES] if args.sweep else [f"seed {s}" for s in ensemble.seeds]
    for label, member_loss, member_accuracy in zip(labels, loss, accuracy, strict=True):
        print(f"{label:>10}: test loss {member_loss:.4f}, accuracy {member_accuracy:.4f}")
    probabilities = ensemble.predict(x_test)  # (members, N, 10)
    averaged = float(np.mean(probabilities.mean(axis=0).argmax(-1) == y_test))
    print(f"members' mean accuracy {accuracy.mean():.4f} ± {accuracy.std():.4f}; averaged predictions: {averaged:.4f}")
    if args.plot:
        parallel.plot_ensemble_history(history, to_file=args.plot)
        print(f"curves written to {args.plot}")
    return {"loss": loss, "accuracy": accuracy, "ensemble_accuracy": averaged, "history": history}


if __name__ == "__main__":
    main()
