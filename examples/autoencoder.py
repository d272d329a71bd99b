"""A variational autoencoder trained through nnjax's functional core.

Unsupervised learning with a loop that `fit` does not know: the model returns
a dict (reconstruction logits, posterior mean and log-variance), the loss is a
plain function written here (Bernoulli reconstruction + KL to the unit
Gaussian), and training is `nj.train.train_step` scanned over an epoch under
one `jax.jit`. The step hands the model a fresh PRNG key each step
(`fold_in(state.rng, state.step)`), which the model uses for the
reparameterisation trick; at inference (`predict_step`) there is no key and
the model decodes the posterior mean.

    python examples/autoencoder.py                      # Fashion-MNIST when available, else digits
    python examples/autoencoder.py --dataset digits --epochs 20 --output vae.png

Writes a PNG grid: test inputs (top rows) over their reconstructions (bottom rows).
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import nnjax as nj

# -- data ---------------------------------------------------------------------------------------


def _as_unit_images(x) -> np.ndarray:
    """Images as float32 in [0, 1], shape (N, H, W) (a trailing channel axis of 1 is dropped)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.max() > 1.0:
        x = x / 255.0
    return x


def load_images(dataset: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Returns `(x_train, x_test, name)`: float32 images in [0, 1] of shape (N, H, W).

    `dataset` is "fashion_mnist" (through `nj.datasets`, i.e. TFDS), "digits"
    (scikit-learn's 8x8 digits, split 80/20 as in the quickstart) or "auto"
    (Fashion-MNIST, falling back to digits with one line saying why).
    """
    if dataset in ("auto", "fashion_mnist"):
        try:
            from nnjax import datasets  # imports tensorflow_datasets lazily

            (x_train, _), (x_test, _) = datasets.fashion_mnist.load_data()
            return _as_unit_images(x_train), _as_unit_images(x_test), "fashion_mnist"
        except Exception as err:  # noqa: BLE001 - any failure to get the data means: use the fallback
            if dataset == "fashion_mnist":
                raise
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            print(f"Fashion-MNIST is not available through TFDS ({reason}); training on scikit-learn's digits instead.")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, x_test = train_test_split(
        (data.images / 16.0).astype(np.float32), test_size=0.2, random_state=0, stratify=data.target
    )
    return x_train, x_test, "digits"


# -- model --------------------------------------------------------------------------------------


class VAE(nnx.Module):
    """An MLP encoder q(z|x) = N(mean, exp(log_var)) and an MLP Bernoulli decoder p(x|z).

    Args:
      image_shape: `(H, W)` of one image.
      latent_dim: size of z.
      hidden: width of the hidden layer of the encoder and of the decoder.
      key: PRNG key for the initialisers.
    """

    def __init__(self, image_shape: tuple[int, int], latent_dim: int, hidden: int, *, key: jax.Array):
        enc_key, mean_key, var_key, dec_key, out_key = jax.random.split(key, 5)
        self.image_shape = tuple(image_shape)
        self.encoder = nj.layers.Dense(hidden, activation="relu", key=enc_key)
        self.to_mean = nj.layers.Dense(latent_dim, key=mean_key)
        self.to_log_var = nj.layers.Dense(latent_dim, key=var_key)
        self.decoder = nj.layers.Dense(hidden, activation="relu", key=dec_key)
        self.to_logits = nj.layers.Dense(math.prod(image_shape), key=out_key)

    def decode(self, z: jax.Array) -> jax.Array:
        """Latents `(batch, latent_dim)` -> pixel logits `(batch, H, W)`."""
        return self.to_logits(self.decoder(z)).reshape((z.shape[0],) + self.image_shape)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> dict[str, jax.Array]:
        """Images `(batch, H, W)` -> {"logits": (batch, H, W), "mean", "log_var": (batch, latent_dim)}.

        With a `key` (training) z is sampled as `mean + exp(log_var / 2) * eps`;
        without one (inference) z is the posterior mean.
        """
        hidden = self.encoder(x.reshape(x.shape[0], -1))
        mean, log_var = self.to_mean(hidden), self.to_log_var(hidden)
        z = mean if key is None else mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
        return {"logits": self.decode(z), "mean": mean, "log_var": log_var}


def vae_loss(outputs: dict, batch: dict, *, beta: float = 1.0) -> tuple[jax.Array, dict]:
    """The negative ELBO per image: Bernoulli reconstruction + beta * KL(q(z|x) || N(0, I)).

    Args:
      outputs: the model's dict (see `VAE.__call__`).
      batch: `{"x": images (batch, H, W) in [0, 1]}`.
      beta: weight of the KL term.

    Returns:
      `(loss, {"reconstruction": ..., "kl": ...})`, float32 scalars (means over the batch).
    """
    x = batch["x"]
    reconstruction = optax.sigmoid_binary_cross_entropy(outputs["logits"], x).reshape(x.shape[0], -1).sum(-1)
    mean, log_var = outputs["mean"], outputs["log_var"]
    kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)
    return jnp.mean(reconstruction + beta * kl), {"reconstruction": reconstruction.mean(), "kl": kl.mean()}


# -- training -----------------------------------------------------------------------------------


def make_train_epoch(batch_size: int):
    """A jit-compiled epoch: shuffle on device, then `lax.scan` of `nj.train.train_step` over the batches."""

    @jax.jit
    def train_epoch(state: nj.train.TrainState, images: jax.Array, key: jax.Array):
        steps = images.shape[0] // batch_size
        order = jax.random.permutation(key, images.shape[0])[: steps * batch_size]
        batches = {"x": images[order].reshape((steps, batch_size) + images.shape[1:])}
        state, metrics = jax.lax.scan(nj.train.train_step, state, batches)
        return state, jax.tree.map(jnp.mean, metrics)

    return train_epoch


def save_grid(path: str, inputs: np.ndarray, reconstructions: np.ndarray, columns: int = 10) -> None:
    """Writes inputs (top rows) over reconstructions (bottom rows) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 2 * math.ceil(len(inputs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns, rows))
    half = rows // 2
    for index, ax in enumerate(axes.flat):
        row, col = divmod(index, columns)
        source = inputs if row < half else reconstructions
        item = (row % half) * columns + col
        ax.axis("off")
        if item < len(source):
            ax.imshow(source[item], cmap="gray", vmin=0.0, vmax=1.0)
    fig.suptitle("inputs (top) / reconstructions (bottom)")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=["auto", "fashion_mnist", "digits"], default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="10 for Fashion-MNIST, 100 for digits by default")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--beta", type=float, default=1.0, help="weight of the KL term")
    parser.add_argument("--max-train", type=int, default=None, help="use at most this many training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="vae_reconstructions.png", help="where to write the PNG grid")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Trains the VAE, writes the grid and returns the held-out errors.

    Returns:
      {"dataset", "reconstruction_mse", "mean_image_mse", "ratio", "final_loss", "output", "state"}; the
      MSEs are per-pixel on the test images: the VAE's reconstruction (posterior mean decoded) and the
      mean training image used as a prediction for every test image; "state" is the trained `TrainState`.
    """
    args = parse_args(argv)
    x_train, x_test, dataset = load_images(args.dataset)
    epochs = args.epochs if args.epochs is not None else (10 if dataset == "fashion_mnist" else 100)
    if args.max_train is not None:
        x_train = x_train[: args.max_train]
    init_key, state_key, shuffle_key = jax.random.split(jax.random.key(args.seed), 3)

    model = VAE(x_train.shape[1:], args.latent_dim, args.hidden, key=init_key)
    model(jnp.asarray(x_train[:2]))  # builds the Dense layers from a sample batch
    state = nj.train.TrainState.create(
        model,
        optax.adam(args.learning_rate),
        loss_fn=lambda outputs, batch: vae_loss(outputs, batch, beta=args.beta),
        key=state_key,
    )

    train_epoch = make_train_epoch(args.batch_size)
    images = jnp.asarray(x_train)
    start = time.perf_counter()
    for epoch in range(epochs):
        state, metrics = train_epoch(state, images, jax.random.fold_in(shuffle_key, epoch))
        if epoch == 0 or (epoch + 1) % max(1, epochs // 5) == 0:
            metrics = {name: round(float(value), 3) for name, value in metrics.items()}
            print(f"epoch {epoch + 1}/{epochs} {metrics} ({time.perf_counter() - start:.1f}s)")

    reconstructions = np.asarray(jax.nn.sigmoid(jax.jit(nj.train.predict_step)(state, jnp.asarray(x_test))["logits"]))
    reconstruction_mse = float(np.mean((reconstructions - x_test) ** 2))
    mean_image_mse = float(np.mean((x_train.mean(axis=0, keepdims=True) - x_test) ** 2))
    save_grid(args.output, x_test[:20], reconstructions[:20])
    result = {
        "dataset": dataset,
        "reconstruction_mse": reconstruction_mse,
        "mean_image_mse": mean_image_mse,
        "ratio": reconstruction_mse / mean_image_mse,
        "final_loss": float(metrics["loss"]),
        "output": args.output,
        "state": state,
    }
    print(
        f"test MSE: VAE {reconstruction_mse:.4f} vs mean image {mean_image_mse:.4f} "
        f"(ratio {result['ratio']:.3f}); grid written to {args.output}"
    )
    return result


if __name__ == "__main__":
    main()
