"""Wall-clock timing that JAX's asynchronous dispatch cannot fool.

Every clock read comes after `jax.block_until_ready` on what the timed call
returned, warm-up runs are kept apart from measured ones, and results are
reported as a median with a spread (never a single run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.monitoring


def block(tree: Any) -> Any:
    """Waits until every array in `tree` is computed; returns `tree` unchanged.

    Non-array leaves (Python numbers, None, a Keras `History`) are ignored, so any
    contender's return value can be passed.
    """

    def ready(leaf):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
        return leaf

    jax.tree.map(ready, tree)
    return tree


def summarize(samples: Sequence[float]) -> dict:
    """Median and spread of repeated measurements.

    Args:
      samples: at least one measurement (seconds, or any unit).

    Returns:
      `{"median", "mean", "min", "max", "iqr", "rel_spread", "n", "samples"}`, where
      `iqr` is the interquartile range and `rel_spread` is `iqr / median`
      (0 when fewer than 2 samples).

    Raises:
      ValueError: if `samples` is empty.
    """
    values = [float(s) for s in samples]
    if not values:
        raise ValueError("summarize: expected at least one sample; received 0")
    median = statistics.median(values)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        iqr = q3 - q1
    else:
        iqr = 0.0
    return {
        "median": median,
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "iqr": iqr,
        "rel_spread": iqr / median if median else 0.0,
        "n": len(values),
        "samples": values,
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Runs `fn()` once and returns `(seconds, result)`, with the result computed.

    The clock is read only after `block(result)`, so asynchronously dispatched
    work is included.
    """
    start = time.perf_counter()
    result = block(fn())
    return time.perf_counter() - start, result


def timed_both(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Like `timed`, also returning the process's CPU seconds (all threads) over the call.

    On a shared machine, CPU time is far less sensitive than wall time to other
    processes taking the cores; it counts the work a contender did, including
    busy-waiting threads.

    Returns:
      `(wall_seconds, cpu_seconds, result)`.
    """
    cpu = time.process_time()
    start = time.perf_counter()
    result = block(fn())
    return time.perf_counter() - start, time.process_time() - cpu, result


def time_fn(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5) -> dict:
    """Times `fn()` after `warmup` untimed calls.

    Args:
      fn: a callable of no arguments (close over the inputs); its result is waited for.
      warmup: untimed calls first (compilation, caches). The first one's time is
        reported as `first_s`.
      repeats: timed calls (at least 1).

    Returns:
      `summarize(...)` of the timed calls plus `"first_s"` (None without warm-up).

    Raises:
      ValueError: if `repeats < 1` or `warmup < 0`.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_fn: expected repeats >= 1 and warmup >= 0; got repeats={repeats}, warmup={warmup}")
    first = None
    for i in range(warmup):
        seconds, _ = timed(fn)
        if i == 0:
            first = seconds
    stats = summarize([timed(fn)[0] for _ in range(repeats)])
    stats["first_s"] = first
    return stats


def interleaved(
    contenders: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 5,
    warmup: int = 1,
    rotate: bool = True,
    on_error: str = "raise",
) -> dict[str, dict]:
    """Times several contenders in interleaved rounds, so drift hits all alike.

    Each round calls every contender once; with `rotate` the starting contender
    moves by one each round so no contender always runs first (after another's
    cache-cold run) or last.

    Args:
      contenders: name -> callable of no arguments doing one unit of work (an epoch).
      rounds: measured rounds (at least 1).
      warmup: untimed rounds first; the first warm-up time of each contender is
        reported as `first_s` (it includes compilation).
      rotate: move the starting contender by one each round.
      on_error: "raise", or "record": a contender that raises is dropped from the
        remaining rounds and reported as `{"error": "Type: message"}` (so one
        failing baseline does not lose the others' numbers).

    Returns:
      name -> `summarize(...)` of its measured wall times, plus `"first_s"`,
      `"cpu"` (`summarize(...)` of the process CPU seconds of the same calls) and
      `"compiles"` (XLA compilations during its measured calls: 0 proves that
      nothing recompiled after the warm-up).

    Raises:
      ValueError: if `contenders` is empty, `rounds < 1` or `on_error` is unknown.
    """
    names = list(contenders)
    if not names or rounds < 1 or warmup < 0:
        raise ValueError(
            f"interleaved: expected at least one contender, rounds >= 1 and warmup >= 0; got {len(names)} contenders, "
            f"rounds={rounds}, warmup={warmup}"
        )
    if on_error not in ("raise", "record"):
        raise ValueError(f"interleaved: `on_error` must be 'raise' or 'record'; got {on_error!r}")
    first: dict[str, float | None] = {name: None for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu_samples: dict[str, list[float]] = {name: [] for name in names}
    compiles = {name: CompileCounter() for name in names}
    errors: dict[str, str] = {}
    for r in range(warmup + rounds):
        offset = r % len(names) if rotate else 0
        for name in names[offset:] + names[:offset]:
            if name in errors:
                continue
            try:
                if r < warmup:
                    seconds, _, _ = timed_both(contenders[name])
                    first[name] = seconds if first[name] is None else first[name]
                    continue
                with compiles[name]:
                    seconds, cpu_seconds, _ = timed_both(contenders[name])
            except Exception as err:
                if on_error == "raise":
                    raise
                errors[name] = f"{type(err).__name__}: {err}"
                continue
            samples[name].append(seconds)
            cpu_samples[name].append(cpu_seconds)
    out = {}
    for name in names:
        if name in errors:
            out[name] = {"error": errors[name]}
            continue
        out[name] = summarize(samples[name])
        out[name]["first_s"] = first[name]
        out[name]["cpu"] = summarize(cpu_samples[name])
        out[name]["compiles"] = compiles[name].count
    return out


class CompileCounter:
    """Counts XLA compilations (and their seconds) while active, via `jax.monitoring`.

    Use it to prove that a loop does not recompile:

        with CompileCounter() as compiles:
            model.fit(x, y, epochs=3)
        assert compiles.count == 0   # after a warm-up fit

    Attributes:
      count: backend compilations seen (jit cache misses, including eager ops
        that compile for the first time).
      seconds: their total backend compile time.
      traces: jaxpr tracings seen.
    """

    EVENT_COMPILE = "/jax/core/compile/backend_compile_duration"
    EVENT_TRACE = "/jax/core/compile/jaxpr_trace_duration"

    def __init__(self):
        self.count = 0
        self.seconds = 0.0
        self.traces = 0
        self._active = False

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if not self._active:
            return
        if event == self.EVENT_COMPILE:
            self.count += 1
            self.seconds += float(duration)
        elif event == self.EVENT_TRACE:
            self.traces += 1

    def __enter__(self) -> CompileCounter:
        self._active = True
        if not getattr(self, "_registered", False):
            jax.monitoring.register_event_duration_secs_listener(self._listen)
            self._registered = True
        return self

    def __exit__(self, *exc) -> None:
        self._active = False
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if getattr(self, "_registered", False) and unregister is not None:
            unregister(self._listen)
            self._registered = False


def compile_timed(jitted: Callable, *args, **kwargs) -> tuple[Any, float]:
    """Lowers and compiles a `jax.jit` function for `args`; returns `(compiled, seconds)`.

    The compiled object runs without further tracing (`compiled(*args)`) and
    answers `cost_analysis()` / `memory_analysis()`.
    """
    start = time.perf_counter()
    compiled = jitted.lower(*args, **kwargs).compile()
    return compiled, time.perf_counter() - start


__all__ = ["CompileCounter", "block", "compile_timed", "interleaved", "summarize", "time_fn", "timed", "timed_both"]
