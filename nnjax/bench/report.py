"""Benchmark results as JSON that carries its provenance.

Every result says when and where it was measured (machine, device, library
versions, relevant environment variables) and the exact command that produced
it. The schema (version 1), which `benchmarks/make_readme.py` renders:

    {"benchmark": "mlp", "schema": 1, "date": "2025-01-01T00:00:00+00:00",
     "command": "python benchmarks/mlp.py --epochs 1", "machine": {...},
     "device": {...}, "versions": {...}, "env": {...}, "config": {...},
     "results": [{"name": "nnjax fit", "status": "ok", "median_s": 0.61, ...},
                 {"name": "keras fit", "status": "skipped", "reason": "keras is not installed"}],
     "ratios": {"fit vs hand loop": 1.03}, "notes": ["..."]}
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

SCHEMA_VERSION = 1

# Distributions whose versions every result records (missing ones are left out).
VERSIONED = (
    "nnjax",
    "jax",
    "jaxlib",
    "jax-cuda12-plugin",
    "jax-cuda13-plugin",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "keras",
    "torch",
    "tensorflow-datasets",
    "grain",
)

ENV_VARS = ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES", "NNJAX_PEAK_FLOPS")


def versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Installed versions of the libraries that matter to a benchmark (not importing them)."""
    out = {"python": platform.python_version()}
    for name in tuple(VERSIONED) + tuple(extra):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def machine() -> dict:
    """The host: OS, architecture, processor and CPU count."""
    cpu_name = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "system": platform.system(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_name,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }


def command(argv: Sequence[str] | None = None) -> str:
    """The exact command line that is running, shell-quoted."""
    argv = list(sys.argv if argv is None else argv)
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable) or "python"] + argv)


def to_json_safe(value: Any) -> Any:
    """Plain JSON types: NumPy/JAX scalars become floats/ints, NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype") and np.ndim(value) == 0:
        return to_json_safe(np.asarray(value).item())
    return str(value)


def make_result(
    benchmark: str,
    results: Sequence[dict],
    *,
    config: dict | None = None,
    ratios: dict | None = None,
    notes: Sequence[str] = (),
    argv: Sequence[str] | None = None,
) -> dict:
    """Assembles a schema-1 result with the environment filled in.

    Args:
      benchmark: the benchmark's name ("mlp", "cnn", ...).
      results: one dict per contender or configuration; each has a "name" and a
        "status" ("ok" or "skipped", the latter with a "reason").
      config: the settings that produced the numbers (sizes, repeats, ...).
      ratios: named speed ratios (> 1 means the first named is faster).
      notes: free-text observations.
      argv: the command's arguments (default `sys.argv`).

    Raises:
      ValueError: if a result lacks a "name".
    """
    from nnjax.bench.flops import device_info

    for i, r in enumerate(results):
        if "name" not in r:
            raise ValueError(f"make_result: result {i} must have a 'name'; got keys {sorted(r)}")
    return to_json_safe(
        {
            "benchmark": benchmark,
            "schema": SCHEMA_VERSION,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command(argv),
            "machine": machine(),
            "device": device_info(),
            "versions": versions(),
            "env": {k: os.environ[k] for k in ENV_VARS if k in os.environ},
            "config": dict(config or {}),
            "results": [{"status": "ok", **r} for r in results],
            "ratios": dict(ratios or {}),
            "notes": list(notes),
        }
    )


def write_result(result: dict, out: str | None = None, *, stream=None) -> dict:
    """Prints `result` as one JSON document to stdout and, with `out`, writes it to that file.

    Returns:
      `result`, JSON-safe.
    """
    result = to_json_safe(result)
    text = json.dumps(result, indent=1, sort_keys=False)
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            f.write(text + "\n")
    print(text, file=stream or sys.stdout, flush=True)
    return result


__all__ = ["SCHEMA_VERSION", "command", "machine", "make_result", "to_json_safe", "versions", "write_result"]
