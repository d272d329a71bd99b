"""airbench94's network on CIFAR-10-shaped data: nnjax against the same network in PyTorch.

Model: `nnjax.models.Airbench94` (2x2 whitening conv, conv groups 64/256/256 with
BatchNorm and GELU, 1.97M parameters) and, for PyTorch, the same layers written
in torch (channels-last, BatchNorm momentum 0.6 / eps 1e-12, frozen BN scale).
Nesterov SGD (momentum 0.85), cross-entropy on logits, batch 1024, bf16 compute
on GPU (nnjax `dtype_policy="mixed_bfloat16"`, torch autocast bf16) and float32 on
CPU. Synthetic images and labels already on the device for every contender; no
augmentation (airbench's flips and translations are left out of both).

Contenders, timed in interleaved rounds of ``--epochs`` epochs each:

- ``nnjax_fit``: ``model.fit(x_dev, y_dev, epochs=E, verbose=0)`` with the default ``steps_per_execution="auto"``.
- ``nnjax_fit_1``: the same with ``steps_per_execution=1``.
- ``nnjax_fit_spe``: the same with ``steps_per_execution=K`` (skipped when K = 1); with several K
  (``--steps-per-execution 2,4,8``) one contender ``nnjax_fit_spe{K}`` per K.
- ``nnjax_core_loop``: ``jax.jit(nj.train.train_step)`` per batch (a hand-written loop on the core).
- ``torch_eager``: PyTorch eager (skipped if torch is missing).
- ``torch_compile``: ``torch.compile(model)`` (only with ``--torch-compile``; compiling takes minutes).

Reports time per epoch, steps/s, images/s, FLOPs per step from XLA's cost
analysis of one nnjax step, achieved TFLOP/s and MFU against the bf16 peak of
the device (fp32 on CPU, where no peak is known unless $NNJAX_PEAK_FLOPS is set).
Time to 94% on real CIFAR-10 is not measured: it needs the data set and
airbench's full recipe (whitening init, lookahead EMA, TTA), neither here.

The ratio ``nnjax_fit vs best fixed`` compares the default (auto) with the fastest fixed
``steps_per_execution`` measured in the same run (``nnjax_fit_1`` and every ``nnjax_fit_spe*``).

Run (GPU): ``python benchmarks/cnn.py --out benchmarks/results/cnn_gpu.json``.
Tiny smoke run: ``python benchmarks/cnn.py --examples 64 --batch-size 32 --widths 8,16,16 --rounds 1``.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from _common import core_loop_contender, fit_contender, one_step_cost, result_rows, speed_ratio, torch_device

import nnjax as nj
from nnjax import bench

ALL = ("nnjax_fit", "nnjax_fit_1", "nnjax_fit_spe", "nnjax_core_loop", "torch_eager", "torch_compile")
MOMENTUM, LEARNING_RATE = 0.85, 0.01


def make_data(n: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, size, size, 3), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return x, y


def new_module(args):
    return nj.models.Airbench94(widths=args.widths, num_classes=10, classifier_activation=None)


def loss():
    return nj.losses.SparseCategoricalCrossentropy(from_logits=True)


def nnjax_model(args, steps_per_execution: int | str, mixed: bool):
    model = nj.Model(new_module(args), input_shape=(args.image_size, args.image_size, 3))
    model.compile(
        optimizer=nj.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM, nesterov=True),
        loss=loss(),
        dtype_policy="mixed_bfloat16" if mixed else None,
        steps_per_execution=steps_per_execution,
        seed=args.seed,
    )
    return model


def core_state(args, mixed: bool):
    module = new_module(args)
    module(jnp.zeros((1, args.image_size, args.image_size, 3), jnp.float32))
    tx = nj.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM, nesterov=True)
    return nj.train.TrainState.create(module, tx, loss=loss(), compute_dtype=jnp.bfloat16 if mixed else None, key=args.seed)


def torch_contender(args, x, y, device: str, compiled: bool):
    """The same network in PyTorch: NCHW tensors in channels-last memory, autocast bf16 on CUDA."""
    import torch  # noqa: PLC0415 - optional baseline
    from torch import nn  # noqa: PLC0415

    torch.manual_seed(args.seed)
    if device == "cpu":
        torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)

    def batch_norm(channels):
        bn = nn.BatchNorm2d(channels, momentum=0.6, eps=1e-12)
        bn.weight.requires_grad = False  # airbench: BN without a trainable scale
        return bn

    def group(c_in, c_out):
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), batch_norm(c_out), nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), batch_norm(c_out), nn.GELU(),
        )  # fmt: skip

    class Scale(nn.Module):
        def forward(self, h):
            return h * (1 / 9)

    widths = list(args.widths)
    net = nn.Sequential(
        nn.Conv2d(3, 24, 2, bias=True), nn.GELU(),
        group(24, widths[0]), group(widths[0], widths[1]), group(widths[1], widths[2]),
        nn.MaxPool2d(3), nn.Flatten(), nn.Linear(widths[2], 10, bias=False), Scale(),
    )  # fmt: skip
    net = net.to(device=device, memory_format=torch.channels_last)
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=LEARNING_RATE, momentum=MOMENTUM, nesterov=True)
    step_net = torch.compile(net) if compiled else net
    data_x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).to(device)
    data_y = torch.from_numpy(y.astype(np.int64)).to(device)
    n, bs = x.shape[0], args.batch_size
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    last = {}

    def run():
        for epoch in range(args.epochs):  # epochs 0..E-1 of each run, as fit(epochs=E)
            order = torch.from_numpy(nj.data.epoch_permutation(args.seed, epoch, n)).to(device)
            loss_sum = torch.zeros((), device=device)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                with autocast:
                    logits = step_net(data_x[idx])
                    batch_loss = nn.functional.cross_entropy(logits.float(), data_y[idx])
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                optimizer.step()
                loss_sum += batch_loss.detach() * idx.shape[0]
            last["loss"] = float(loss_sum) / n  # a host read: waits for the device
        if device == "cuda":
            torch.cuda.synchronize()
        return None

    return run, last, torch.__version__


def parse_args(argv=None):
    cpu = jax.default_backend() == "cpu"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=8192 if cpu else 50000, help="training images (50000 = CIFAR-10)")
    parser.add_argument("--batch-size", type=int, default=256 if cpu else 1024)
    parser.add_argument("--widths", default="16,64,64" if cpu else "64,256,256", help="channels of the three conv groups")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1 if cpu else 2, help="epochs per contender per round")
    parser.add_argument("--rounds", type=int, default=3 if cpu else 5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps-per-execution", default="4" if cpu else "8",
                        help="K for nnjax_fit_spe, or several comma-separated (one contender nnjax_fit_spe{K} each)")  # fmt: skip
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: mixed bfloat16 on accelerators, float32 on CPU")  # fmt: skip
    parser.add_argument("--contenders", default="nnjax_fit,nnjax_fit_1,nnjax_fit_spe,nnjax_core_loop,torch_eager",
                        help=f"comma-separated subset of {','.join(ALL)}")  # fmt: skip
    parser.add_argument("--torch-compile", action="store_true", help="add torch_compile to the contenders")
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch CPU threads (0 = all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    args = parser.parse_args(argv)
    args.widths = tuple(int(w) for w in args.widths.split(","))
    if len(args.widths) != 3:
        parser.error(f"--widths: expected three comma-separated ints; got {args.widths}")
    try:
        args.steps_per_execution = [int(k) for k in str(args.steps_per_execution).split(",")]
    except ValueError:
        parser.error(f"--steps-per-execution: expected comma-separated ints; got {args.steps_per_execution!r}")
    contenders = args.contenders.split(",") + (["torch_compile"] if args.torch_compile else [])
    unknown = sorted(set(contenders) - set(ALL))
    if unknown:
        parser.error(f"--contenders: unknown {unknown}; expected names from {list(ALL)}")
    args.spe = {}  # contender name -> its fixed steps_per_execution
    args.contenders = []
    for name in contenders:
        if name == "nnjax_fit_spe" and len(args.steps_per_execution) > 1:
            for k in args.steps_per_execution:
                args.spe[f"nnjax_fit_spe{k}"] = k
                args.contenders.append(f"nnjax_fit_spe{k}")
        else:
            if name == "nnjax_fit_spe":
                args.spe[name] = args.steps_per_execution[0]
            args.contenders.append(name)
    return args


def main(argv=None):
    args = parse_args(argv)
    platform = jax.default_backend()
    mixed = args.precision == "bfloat16" or (args.precision == "auto" and platform != "cpu")
    x, y = make_data(args.examples, args.image_size, args.seed)
    x_dev, y_dev = jax.device_put(x), jax.device_put(y)
    contenders, lasts, skipped, extra = {}, {}, {}, {}
    for name in args.contenders:
        try:
            if name in ("nnjax_fit", "nnjax_fit_1") or name in args.spe:
                k = {"nnjax_fit": "auto", "nnjax_fit_1": 1}.get(name) or args.spe[name]
                if name in args.spe and k == 1:
                    skipped[name] = "steps_per_execution is 1 (same as nnjax_fit)"
                    continue
                contenders[name], lasts[name] = fit_contender(nnjax_model(args, k, mixed), x_dev, y_dev,
                                                              batch_size=args.batch_size, epochs=args.epochs)  # fmt: skip
                extra[name] = {"steps_per_execution": k}
            elif name == "nnjax_core_loop":
                contenders[name], lasts[name] = core_loop_contender(core_state(args, mixed), x_dev, y_dev,
                                                                    batch_size=args.batch_size, epochs=args.epochs, seed=args.seed)  # fmt: skip
            else:
                device = torch_device(platform)
                run, last, version = torch_contender(args, x, y, device, compiled=name == "torch_compile")
                contenders[name], lasts[name] = run, last
                extra[name] = {"version": version, "device": device, "autocast_bf16": device == "cuda"}
        except ImportError as err:
            skipped[name] = f"not installed: {err}"

    state = core_state(args, mixed)
    cost = one_step_cost(state, (x_dev[: args.batch_size], y_dev[: args.batch_size]), compile=platform == "cpu")
    del state
    stats = bench.interleaved(contenders, rounds=args.rounds, warmup=args.warmup, on_error="record") if contenders else {}
    steps_per_epoch = -(-args.examples // args.batch_size)
    peak = bench.peak_flops(dtype="bf16" if mixed else "fp32")
    rows = result_rows(args.contenders, stats, skipped, lasts, extra, steps_per_run=steps_per_epoch * args.epochs,
                       examples_per_run=args.examples * args.epochs, epochs=args.epochs, flops_per_step=cost["flops"], peak=peak)  # fmt: skip
    ratios = {}
    for a, b in (("nnjax_fit", "nnjax_fit_1"), ("nnjax_fit", "nnjax_fit_spe"), ("nnjax_fit", "torch_eager"), ("nnjax_fit", "torch_compile"), ("nnjax_fit_spe", "torch_eager"),
                 ("nnjax_fit", "nnjax_core_loop"), ("nnjax_fit_spe", "nnjax_core_loop")):  # fmt: skip
        value = speed_ratio(rows, a, b)
        if value is not None:
            ratios[f"{a} vs {b}"] = value
    fixed = [r for r in rows if r["name"] in ("nnjax_fit_1", *args.spe) and r["status"] == "ok"]
    if fixed and speed_ratio(rows, "nnjax_fit", fixed[0]["name"]) is not None:
        best = min(fixed, key=lambda r: r["epoch_s"])
        ratios[f"nnjax_fit vs best fixed ({best['name']})"] = speed_ratio(rows, "nnjax_fit", best["name"])
    config = {
        "examples": args.examples, "batch_size": args.batch_size, "widths": list(args.widths), "image_size": args.image_size,
        "epochs": args.epochs, "rounds": args.rounds, "warmup": args.warmup, "steps_per_execution": args.steps_per_execution,
        "precision": "mixed_bfloat16" if mixed else "float32", "steps_per_epoch": steps_per_epoch,
        "flops_per_step": cost["flops"], "flops_per_example": cost["flops"] / args.batch_size if cost["flops"] else None,
        "cost_analysis_s": cost["compile_s"], "flops_counted_on": "compiled step" if platform == "cpu" else "lowered step", "peak_flops": peak, "peak_memory_bytes": bench.peak_memory(),
        "ratio": "median epoch time of the second over the first: > 1 means the first is faster",
    }  # fmt: skip
    notes = ["no data augmentation in any contender; synthetic data already on the device",
             "flops_per_step is XLA's count for one nnjax step (cuDNN custom calls are not counted)"]  # fmt: skip
    return bench.write_result(bench.make_result("cnn", rows, config=config, ratios=ratios, notes=notes), args.out)


if __name__ == "__main__":
    main()
