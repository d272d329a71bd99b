"""GPT training throughput and MFU: `nnjax.models.GPT` through `fit` and through a loop on the core.

Default on accelerators: GPT-2 small (12 layers, 12 heads, width 768, context 1024,
vocabulary 50,304: 124M parameters), bf16 compute with float32 parameters and
AdamW state (``dtype_policy="mixed_bfloat16"``), attention through
``jax.nn.dot_product_attention`` with the cuDNN (flash) kernel, batch 32
sequences, synthetic tokens already on the device. On CPU a small GPT
(2 layers, width 64, context 64) so the script runs anywhere.

Contenders (each in its own block: one warm-up epoch, then ``--epochs`` timed epochs):

- ``nnjax_fit``: one ``model.fit(x, y, epochs=1+E)``; each epoch is timed by a callback between
  ``on_epoch_begin`` and ``on_epoch_end`` (fit reads the epoch's loss on the host before the latter,
  so the device is done); compile and fit's set-up land in the warm-up epoch.
- ``nnjax_fit_spe``: the same with ``steps_per_execution=K``.
- ``nnjax_core_loop``: ``jax.jit(nj.train.train_step)`` per batch, each epoch timed with
  ``block_until_ready``.

Reports tokens/s, time per step, FLOPs per token (analytic ``6N + 12 L d T``, N = parameters
without the position embedding, as nanoGPT; and XLA's cost analysis of one step, which does not
count cuDNN attention), MFU against the chip's dense bf16 peak (``nnjax.bench.peak_flops``;
set $NNJAX_PEAK_FLOPS to override) and peak device memory.

Run (GPU): ``python benchmarks/gpt.py --out benchmarks/results/gpt_gpu.json``.
Tiny smoke run: ``python benchmarks/gpt.py --steps 2 --epochs 1``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import core_loop_contender, one_step_cost

import nnjax as nj
from nnjax import bench

ALL = ("nnjax_fit", "nnjax_fit_spe", "nnjax_core_loop")


class EpochTimer(nj.callbacks.Callback):
    """Wall seconds of each epoch, from on_epoch_begin to on_epoch_end (after fit's host read of the loss)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self.losses: list[float] = []
        self.compiles = bench.CompileCounter()  # counts during every epoch after the first

    def on_epoch_begin(self, epoch, logs=None):
        if self.seconds:
            self.compiles.__enter__()
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.compiles.__exit__(None, None, None)
        self.losses.append(float((logs or {}).get("loss", float("nan"))))


def new_gpt(args) -> nj.models.GPT:
    gpt = nj.models.GPT(vocab_size=args.vocab, block_size=args.context, num_layers=args.layers, num_heads=args.heads,
                        embed_dim=args.width)  # fmt: skip
    for block in gpt.blocks:
        block.attention.implementation = args.attention_impl
    return gpt


def optimizer():
    return nj.optimizers.AdamW(6e-4, weight_decay=0.1, beta_1=0.9, beta_2=0.95, epsilon=1e-8)


def loss():
    return nj.losses.SparseCategoricalCrossentropy(from_logits=True)


def analytic_flops_per_token(args, params: int) -> float:
    """PaLM/nanoGPT training FLOPs per token: 6 N (matmuls, forward and backward) + 12 L d T (attention scores)."""
    non_embedding = params - args.context * args.width  # the position embedding does no matmul
    return 6.0 * non_embedding + 12.0 * args.layers * args.width * args.context


def run_fit(args, x, y, k: int, mixed: bool) -> dict:
    model = nj.Model(new_gpt(args))
    model.build((None, args.context), dtype="int32")
    model.compile(optimizer=optimizer(), loss=loss(), dtype_policy="mixed_bfloat16" if mixed else None,
                  steps_per_execution=k, seed=args.seed)  # fmt: skip
    timer = EpochTimer()
    start = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=1 + args.epochs, verbose=0, callbacks=[timer])
    total = time.perf_counter() - start
    return {"epoch_samples": timer.seconds[1:], "first_epoch_s": timer.seconds[0], "fit_call_s": total,
            "compiles": timer.compiles.count, "final_loss": timer.losses[-1], "params": model.count_params()}  # fmt: skip


def run_core(args, x, y, mixed: bool) -> dict:
    module = new_gpt(args)
    module(jnp.zeros((1, args.context), jnp.int32))
    state = nj.train.TrainState.create(module, optimizer(), loss=loss(), compute_dtype=jnp.bfloat16 if mixed else None,
                                       key=args.seed)  # fmt: skip
    run, last = core_loop_contender(state, x, y, batch_size=args.batch_size, epochs=1, seed=args.seed)
    first, _ = bench.timed(run)
    samples = []
    with bench.CompileCounter() as compiles:
        for _ in range(args.epochs):
            samples.append(bench.timed(run)[0])
    return {"epoch_samples": samples, "first_epoch_s": first, "compiles": compiles.count, "final_loss": last["loss"]}


def parse_args(argv=None):
    cpu = jax.default_backend() == "cpu"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=256 if cpu else 50304)
    parser.add_argument("--context", type=int, default=64 if cpu else 1024, help="sequence length T")
    parser.add_argument("--layers", type=int, default=2 if cpu else 12)
    parser.add_argument("--heads", type=int, default=2 if cpu else 12)
    parser.add_argument("--width", type=int, default=64 if cpu else 768)
    parser.add_argument("--batch-size", type=int, default=8 if cpu else 32, help="sequences per step")
    parser.add_argument("--steps", type=int, default=8 if cpu else 16, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch")
    parser.add_argument("--steps-per-execution", type=int, default=4, help="K for nnjax_fit_spe")
    parser.add_argument("--attention", choices=("auto", "xla", "cudnn"), default="auto",
                        help="auto: cuDNN on GPU with bf16, XLA elsewhere")  # fmt: skip
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: mixed bfloat16 on accelerators, float32 on CPU")  # fmt: skip
    parser.add_argument("--contenders", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    args.contenders = args.contenders.split(",")
    unknown = sorted(set(args.contenders) - set(ALL))
    if unknown:
        parser.error(f"--contenders: unknown {unknown}; expected names from {list(ALL)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    platform = jax.default_backend()
    mixed = args.precision == "bfloat16" or (args.precision == "auto" and platform != "cpu")
    choices = {"auto": "cudnn" if platform == "gpu" and mixed else None, "xla": "xla", "cudnn": "cudnn"}
    args.attention_impl = choices[args.attention]
    fallback = None
    if args.attention == "auto" and args.attention_impl == "cudnn":
        try:  # cuDNN's fused attention needs a recent cuDNN; fall back to XLA's rather than fail
            q = jnp.ones((1, args.context, args.heads, args.width // args.heads), jnp.bfloat16)
            jax.block_until_ready(jax.nn.dot_product_attention(q, q, q, is_causal=True, implementation="cudnn"))
        except Exception as err:
            args.attention_impl, fallback = (
                "xla",
                f"cuDNN attention unavailable ({type(err).__name__}: {str(err)[:200]}); used XLA's",
            )
    n = args.batch_size * args.steps
    tokens = np.random.default_rng(args.seed).integers(0, args.vocab, (n, args.context + 1), dtype=np.int32)
    x, y = jax.device_put(tokens[:, :-1]), jax.device_put(tokens[:, 1:])
    tokens_per_step = args.batch_size * args.context
    peak = bench.peak_flops(dtype="bf16" if mixed else "fp32")

    module = new_gpt(args)
    module(jnp.zeros((1, args.context), jnp.int32))
    probe = nj.train.TrainState.create(module, optimizer(), loss=loss(), compute_dtype=jnp.bfloat16 if mixed else None)
    params = int(sum(np.prod(a.shape) for a in jax.tree.leaves(probe.params)))
    cost = one_step_cost(probe, (x[: args.batch_size], y[: args.batch_size]), compile=platform == "cpu")
    del probe, module
    flops_token = analytic_flops_per_token(args, params)

    rows = []
    for name in args.contenders:
        try:
            if name == "nnjax_core_loop":
                out = run_core(args, x, y, mixed)
            else:
                out = run_fit(args, x, y, 1 if name == "nnjax_fit" else args.steps_per_execution, mixed)
        except Exception as err:  # a failing contender (out of memory, a missing kernel) must not lose the others
            rows.append({"name": name, "status": "failed", "reason": f"{type(err).__name__}: {str(err)[:500]}"})
            continue
        stats = bench.summarize(out["epoch_samples"])
        step_s = stats["median"] / args.steps
        rows.append({
            "name": name,
            "status": "ok",
            "tokens_per_s": tokens_per_step / step_s,
            "ms_per_step": 1e3 * step_s,
            "rel_spread": stats["rel_spread"],
            "mfu": bench.mfu(flops_token * tokens_per_step, step_s, peak),
            "mfu_xla_flops": bench.mfu(cost["flops"], step_s, peak),
            "tflops_per_s": flops_token * tokens_per_step / step_s / 1e12,
            "first_epoch_s": out["first_epoch_s"],
            "compiles_after_warmup": out["compiles"],
            "fit_call_s": out.get("fit_call_s"),
            "final_loss": out["final_loss"],
            "epoch_samples_s": out["epoch_samples"],
            "steps_per_execution": args.steps_per_execution if name == "nnjax_fit_spe" else (1 if name == "nnjax_fit" else None),
        })  # fmt: skip
    by = {r["name"]: r for r in rows if r["status"] == "ok"}
    ratios = {}
    for a, b in (("nnjax_fit", "nnjax_core_loop"), ("nnjax_fit_spe", "nnjax_core_loop")):
        if a in by and b in by:
            ratios[f"{a} vs {b}"] = by[a]["tokens_per_s"] / by[b]["tokens_per_s"]
    config = {
        "vocab": args.vocab, "context": args.context, "layers": args.layers, "heads": args.heads, "width": args.width,
        "params": params, "batch_size": args.batch_size, "tokens_per_step": tokens_per_step, "steps_per_epoch": args.steps,
        "epochs_timed": args.epochs, "precision": "mixed_bfloat16" if mixed else "float32",
        "attention": args.attention_impl or "xla (jax default)", "optimizer": "AdamW(6e-4, wd 0.1, b2 0.95), fp32 state",
        "flops_per_token_analytic": flops_token, "flops_per_step_xla": cost["flops"], "cost_analysis_s": cost["compile_s"], "flops_counted_on": "compiled step" if platform == "cpu" else "lowered step",
        "peak_flops": peak, "peak_memory_bytes": bench.peak_memory(),
        "ratio": "tokens/s of the first over the second",
    }  # fmt: skip
    notes = ["mfu uses the analytic 6N + 12LdT FLOPs per token; mfu_xla_flops uses XLA's count (no cuDNN attention)"]
    if peak is None:
        notes.append("no peak FLOP/s known for this device: MFU is null (set $NNJAX_PEAK_FLOPS)")
    if fallback:
        notes.append(fallback)
    return bench.write_result(bench.make_result("gpt", rows, config=config, ratios=ratios, notes=notes), args.out)


if __name__ == "__main__":
    main()
