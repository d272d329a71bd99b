"""Pieces shared by benchmarks/cnn.py and benchmarks/gpt.py (not part of the nnjax API)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import nnjax as nj
from nnjax import bench


def fit_contender(model, x, y, *, batch_size: int, epochs: int):
    """One run = `model.fit(x, y, epochs=epochs, verbose=0)`; returns (run, last) where last["loss"] is the final epoch loss."""
    last = {}

    def run():
        model.history = nj.callbacks.History()
        history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True)
        last["loss"] = history.history["loss"][-1]
        choice = getattr(history, "steps_per_execution", None)
        if choice is not None:
            last["steps_choice"] = choice.describe()
        return model.state.params

    return run, last


def core_loop_contender(state, x, y, *, batch_size: int, epochs: int, seed: int = 0):
    """A hand-written loop over nnjax's functional core: `jax.jit(train_step)` per batch, gathered on the device.

    `state` is a `nj.train.TrainState`; `x`, `y` are device arrays. The last partial
    batch runs through its own compilation, as in fit. Returns (run, last).
    """
    n = int(x.shape[0])
    full, rest = divmod(n, batch_size)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step_at(state, loss_sum, x, y, order, i):
        idx = jax.lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)
        state, metrics = nj.train.train_step(state, (x[idx], y[idx]))
        return state, loss_sum + metrics["loss"] * batch_size

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step_tail(state, loss_sum, x, y, order):
        idx = order[full * batch_size :]
        state, metrics = nj.train.train_step(state, (x[idx], y[idx]))
        return state, loss_sum + metrics["loss"] * idx.shape[0]

    box = {"state": state}
    last = {}

    def run():
        for epoch in range(epochs):  # epochs 0..E-1 of each run, as fit(epochs=E)
            order = jnp.asarray(nj.data.epoch_permutation(seed, epoch, n), jnp.int32)
            loss_sum = jnp.zeros((), jnp.float32)
            for i in range(full):
                box["state"], loss_sum = step_at(box["state"], loss_sum, x, y, order, i)
            if rest:
                box["state"], loss_sum = step_tail(box["state"], loss_sum, x, y, order)
            last["loss"] = float(loss_sum) / n
        return box["state"].params

    return run, last


def one_step_cost(state, batch, compile: bool = True) -> dict:
    """XLA's cost analysis of one `train_step` (FLOPs, bytes, seconds); `compile=False` counts the lowered program."""
    return bench.step_cost(jax.jit(nj.train.train_step), state, batch, compile=compile)


def torch_device(platform: str) -> str:
    """The torch device matching JAX's platform ("cuda" for gpu when torch sees one, else "cpu")."""
    import torch  # noqa: PLC0415 - optional baseline

    return "cuda" if platform == "gpu" and torch.cuda.is_available() else "cpu"


def result_rows(
    names, stats, skipped, lasts, extra, *, steps_per_run: int, examples_per_run: int, epochs: int, flops_per_step=None, peak=None
) -> list[dict]:
    """Schema-1 result rows (one per contender) from `bench.interleaved` statistics."""
    rows = []
    for name in names:
        if name in skipped:
            rows.append({"name": name, "status": "skipped", "reason": skipped[name]})
            continue
        entry = stats[name]
        if "error" in entry:
            rows.append({"name": name, "status": "failed", "reason": entry["error"]})
            continue
        wall = entry["median"]
        step_s = wall / steps_per_run
        row = {
            "name": name,
            "status": "ok",
            "epoch_s": wall / epochs,
            "rel_spread": entry["rel_spread"],
            "cpu_epoch_s": entry["cpu"]["median"] / epochs,
            "steps_per_s": 1.0 / step_s,
            "examples_per_s": examples_per_run / wall,
            "ms_per_step": 1e3 * step_s,
            "first_run_s": entry["first_s"],
            "compiles_after_warmup": entry["compiles"],
            "final_loss": lasts.get(name, {}).get("loss"),
            **({"steps_choice": lasts[name]["steps_choice"]} if "steps_choice" in lasts.get(name, {}) else {}),
            "run_samples_s": entry["samples"],
        }
        if flops_per_step:
            row["tflops_per_s"] = flops_per_step / step_s / 1e12
            row["mfu"] = bench.mfu(flops_per_step, step_s, peak)
        row.update(extra.get(name, {}))
        rows.append(row)
    return rows


def speed_ratio(rows: list[dict], a: str, b: str, key: str = "epoch_s"):
    """b's time over a's (> 1: `a` is faster), or None when either did not run."""
    by = {r["name"]: r for r in rows}
    ra, rb = by.get(a), by.get(b)
    if not ra or not rb or ra["status"] != "ok" or rb["status"] != "ok" or not ra.get(key):
        return None
    return rb[key] / ra[key]


def as_numpy(tree):
    return jax.tree.map(np.asarray, tree)
