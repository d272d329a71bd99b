"""FLOPs from XLA's cost analysis, peak FLOP/s per device kind, MFU and device memory.

XLA's cost analysis counts a `while`/`scan` body once, whatever its trip count,
so FLOPs per step must come from the compiled *single* step, never from a
scanned epoch. Custom calls (cuDNN attention, for one) are not counted either:
compare with an analytical count where one exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax

# Dense (no sparsity) peak FLOP/s of one chip, by a lower-case substring of
# `device.device_kind`; the first match wins, so specific names come first.
# Sources: NVIDIA data sheets (H100/H200 SXM: 989.4 TFLOP/s bf16 dense, 67 fp32;
# H100 PCIe 756; A100 312 / 19.5; L4 121 / 30.3; V100 125 fp16 / 15.7; B200 2250),
# Google Cloud TPU docs (v2 45, v3 123, v4 275, v5e 197, v5p 459, v6e 918 bf16).
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("h100 pcie", {"bf16": 756e12, "fp16": 756e12, "fp32": 51e12}),
    ("h100", {"bf16": 989.4e12, "fp16": 989.4e12, "fp32": 67e12, "fp8": 1978.9e12}),
    ("h200", {"bf16": 989.4e12, "fp16": 989.4e12, "fp32": 67e12, "fp8": 1978.9e12}),
    ("h800", {"bf16": 989.4e12, "fp16": 989.4e12, "fp32": 67e12}),
    ("b200", {"bf16": 2250e12, "fp16": 2250e12, "fp32": 80e12}),
    ("a100", {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12}),
    ("l4", {"bf16": 121e12, "fp16": 121e12, "fp32": 30.3e12}),
    ("v100", {"fp16": 125e12, "fp32": 15.7e12}),
    ("tpu v2", {"bf16": 45e12}),
    ("tpu v3", {"bf16": 123e12}),
    ("tpu v4", {"bf16": 275e12}),
    ("tpu v5 lite", {"bf16": 197e12}),
    ("tpu v5e", {"bf16": 197e12}),
    ("tpu v5", {"bf16": 459e12}),
    ("tpu v6 lite", {"bf16": 918e12}),
    ("tpu v6e", {"bf16": 918e12}),
]

# Overrides every table entry when set (FLOP/s as a float, e.g. "7.9e14").
PEAK_FLOPS_ENV = "NNJAX_PEAK_FLOPS"

_DTYPE_NAMES = {
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "fp32": "fp32",
    "float32": "fp32",
    "f32": "fp32",
    "fp8": "fp8",
    "float8": "fp8",
}


def _dtype_key(dtype) -> str:
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    key = _DTYPE_NAMES.get(name.lower())
    if key is None and name.lower().startswith("float8"):
        key = "fp8"
    if key is None:
        raise ValueError(f"peak_flops: unknown dtype {dtype!r}; expected one of {sorted(set(_DTYPE_NAMES))}")
    return key


def register_peak_flops(kind_substring: str, dtype, flops_per_second: float) -> None:
    """Adds or replaces a peak for devices whose kind contains `kind_substring` (checked first).

    Args:
      kind_substring: matched case-insensitively against `device.device_kind`.
      dtype: "bf16", "fp16", "fp32", "fp8" (or the jnp dtype).
      flops_per_second: the dense peak of one chip.

    Raises:
      ValueError: for an unknown dtype or a non-positive peak.
    """
    if not flops_per_second > 0:
        raise ValueError(f"register_peak_flops: expected a positive FLOP/s; got {flops_per_second!r}")
    key, sub = _dtype_key(dtype), kind_substring.lower()
    for entry_sub, table in PEAK_FLOPS:
        if entry_sub == sub:
            table[key] = float(flops_per_second)
            PEAK_FLOPS.remove((entry_sub, table))
            PEAK_FLOPS.insert(0, (entry_sub, table))
            return
    PEAK_FLOPS.insert(0, (sub, {key: float(flops_per_second)}))


def peak_flops(device=None, dtype="bf16", override: float | None = None) -> float | None:
    """Dense peak FLOP/s of one chip for `dtype`, or None if unknown (CPUs).

    Args:
      device: a `jax.Device` (default: `jax.devices()[0]`).
      dtype: the compute dtype ("bf16", "fp32", ... or a jnp dtype).
      override: returned as is when given; else `$NNJAX_PEAK_FLOPS` when set;
        else the `PEAK_FLOPS` table.

    Raises:
      ValueError: if `$NNJAX_PEAK_FLOPS` is not a positive number.
    """
    if override is not None:
        return float(override)
    env = os.environ.get(PEAK_FLOPS_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise ValueError(f"${PEAK_FLOPS_ENV} must be a positive FLOP/s like 7.9e14; got {env!r}")
        return value
    device = device or jax.devices()[0]
    kind = getattr(device, "device_kind", "").lower()
    key = _dtype_key(dtype)
    for sub, table in PEAK_FLOPS:
        if sub in kind:
            return table.get(key)
    return None


def cost_analysis(compiled) -> dict:
    """`{"flops", "bytes_accessed", "transcendentals"}` of a compiled function (None where unknown).

    Args:
      compiled: the result of `jax.jit(f).lower(...).compile()` (or of `.lower(...)`:
        the unoptimised program's count).
    """
    try:
        raw = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        raw = None
    if isinstance(raw, (list, tuple)):
        raw = raw[0] if raw else None
    raw = raw or {}

    def get(name):
        value = raw.get(name)
        return None if value is None or value < 0 else float(value)

    return {"flops": get("flops"), "bytes_accessed": get("bytes accessed"), "transcendentals": get("transcendentals")}


def memory_analysis(compiled) -> dict:
    """Buffer sizes XLA planned for a compiled function, in bytes (empty if unavailable)."""
    try:
        stats = compiled.memory_analysis()
    except Exception:
        return {}
    if stats is None:
        return {}
    names = (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "alias_size_in_bytes",
        "temp_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    return {name: int(getattr(stats, name)) for name in names if hasattr(stats, name)}


def step_cost(fn: Callable, *args, compile: bool = True, **kwargs) -> dict:
    """Lowers (and by default compiles) `fn` for `args` and reports its cost.

    Args:
      fn: a `jax.jit` function or a plain one (jitted here).
      *args, **kwargs: example arguments (arrays or `jax.ShapeDtypeStruct`s).
      compile: False skips XLA compilation (minutes for a large model) and counts
        the lowered, unoptimised program: the same FLOPs for matmuls and
        convolutions, no `memory` figures.

    Returns:
      `cost_analysis(...)` plus `"compile_s"` (lowering + compilation seconds) and
      `"memory"` (`memory_analysis(...)`, empty without compilation).
    """
    import time

    from nnjax.bench.timing import compile_timed

    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    if not compile:
        start = time.perf_counter()
        lowered = jitted.lower(*args, **kwargs)
        return cost_analysis(lowered) | {"compile_s": time.perf_counter() - start, "memory": {}}
    compiled, seconds = compile_timed(jitted, *args, **kwargs)
    return cost_analysis(compiled) | {"compile_s": seconds, "memory": memory_analysis(compiled)}


def mfu(flops_per_step: float | None, seconds_per_step: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak (None if either is unknown)."""
    if not flops_per_step or not peak or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / peak


def peak_memory(device=None) -> int | None:
    """Peak bytes in use on `device` since start, or None where the backend does not say (CPU)."""
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:
        return None
    if not stats:
        return None
    value = stats.get("peak_bytes_in_use", stats.get("bytes_in_use"))
    return None if value is None else int(value)


def device_info(device=None) -> dict:
    """Platform, kind and count of the devices, with the bf16/fp32 peaks the table gives."""
    device = device or jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", ""),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "peak_flops_bf16": peak_flops(device, "bf16"),
        "peak_flops_fp32": peak_flops(device, "fp32"),
    }


__all__ = [
    "PEAK_FLOPS",
    "PEAK_FLOPS_ENV",
    "cost_analysis",
    "device_info",
    "memory_analysis",
    "mfu",
    "peak_flops",
    "peak_memory",
    "register_peak_flops",
    "step_cost",
]
