"""Measurement: honest timing, FLOPs from XLA, MFU and JSON results with provenance.

from nnjax import bench
stats = bench.interleaved({"mine": run_mine, "theirs": run_theirs}, rounds=5)
cost = bench.step_cost(jax.jit(train_step), state, batch)          # FLOPs of one step
util = bench.mfu(cost["flops"], stats["mine"]["median"] / steps, bench.peak_flops())
bench.write_result(bench.make_result("mine", [...]), out="benchmarks/results/mine.json")
"""

from nnjax.bench.flops import (
    PEAK_FLOPS,
    PEAK_FLOPS_ENV,
    cost_analysis,
    device_info,
    memory_analysis,
    mfu,
    peak_flops,
    peak_memory,
    register_peak_flops,
    step_cost,
)
from nnjax.bench.report import SCHEMA_VERSION, command, machine, make_result, to_json_safe, versions, write_result
from nnjax.bench.timing import CompileCounter, block, compile_timed, interleaved, summarize, time_fn, timed, timed_both

__all__ = [
    "PEAK_FLOPS",
    "PEAK_FLOPS_ENV",
    "SCHEMA_VERSION",
    "CompileCounter",
    "block",
    "command",
    "compile_timed",
    "cost_analysis",
    "device_info",
    "interleaved",
    "machine",
    "make_result",
    "memory_analysis",
    "mfu",
    "peak_flops",
    "peak_memory",
    "register_peak_flops",
    "step_cost",
    "summarize",
    "time_fn",
    "timed",
    "timed_both",
    "to_json_safe",
    "versions",
    "write_result",
]
