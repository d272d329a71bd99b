"""A tiny character-level GPT trained on four Shakespeare sonnets (shipped as gpt_sonnets.txt), then sampled.

`nj.models.GPT` (token + position embeddings, pre-norm causal blocks, tied head) learns to predict
the next character of every window of the text, through `nj.Model.fit` with a from-logits
cross-entropy; `GPT.generate` then writes new text one character at a time in one compiled loop.

    python examples/gpt.py                                      # 2 layers, width 64: a minute or two on a CPU
    python examples/gpt.py --layers 1 --width 32 --stride 3 --epochs 4   # a small, quick run
    python examples/gpt.py --text my.txt --sample-length 500
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import jax
import numpy as np

import nnjax as nj

TEXT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpt_sonnets.txt")


def make_windows(ids: np.ndarray, block_size: int, stride: int):
    """Every `stride`-th window: inputs `ids[s:s+T]`, targets `ids[s+1:s+T+1]`, both `(N, T)` int32."""
    starts = np.arange(0, len(ids) - block_size, stride)
    x = np.stack([ids[s:s + block_size] for s in starts]).astype(np.int32)
    y = np.stack([ids[s + 1:s + block_size + 1] for s in starts]).astype(np.int32)
    return x, y


def main(argv=None) -> dict:
    """Trains, prints a sample; returns {"initial_loss", "loss", "uniform_loss", "sample"} (losses in nats/char)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=TEXT, help="a UTF-8 text file to learn")
    parser.add_argument("--block-size", type=int, default=64, help="context length in characters")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=64, help="embedding width (divisible by --heads)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--stride", type=int, default=1, help="characters between training windows (1: every offset)")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--sample-length", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)

    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], np.int32)
    x, y = make_windows(ids, args.block_size, args.stride)
    print(f"{len(text):,} characters, {len(vocab)} distinct, {len(x):,} windows of {args.block_size}")

    nj.utils.set_random_seed(args.seed)
    gpt = nj.models.GPT(vocab_size=len(vocab), block_size=args.block_size, num_layers=args.layers, num_heads=args.heads,
                        embed_dim=args.width, dropout=args.dropout)
    model = nj.Model(gpt)
    model.build((None, args.block_size), dtype="int32")  # token ids
    model.compile(optimizer=nj.optimizers.AdamW(args.learning_rate, weight_decay=0.01),
                  loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), seed=args.seed,
                  steps_per_execution=max(1, len(x) // args.batch_size))
    model.summary()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=args.verbose)
    losses = history.history["loss"]
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} nats/char (uniform guess: {math.log(len(vocab)):.3f})")

    prompt = np.array([index[c] for c in text[: min(16, args.block_size)]], np.int32)
    tokens = gpt.generate(prompt, args.sample_length, key=jax.random.key(args.seed), temperature=args.temperature,
                          top_k=min(args.top_k, len(vocab)))
    sample = "".join(vocab[i] for i in tokens)
    print("\n--- sample ---\n" + sample)
    return {"initial_loss": losses[0], "loss": losses[-1], "uniform_loss": math.log(len(vocab)), "sample": sample}


if __name__ == "__main__":
    main(sys.argv[1:])
