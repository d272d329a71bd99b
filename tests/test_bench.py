"""nnjax.bench: timing statistics, compile counting, XLA FLOPs, peak table, MFU, JSON results; fit never recompiles."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj
from nnjax import bench


# ------------------------------------------------------------------------------------------------ statistics
def test_summarize_matches_numpy():
    samples = [0.31, 0.12, 0.55, 0.2, 0.41, 0.18]
    stats = bench.summarize(samples)
    q1, q3 = np.percentile(samples, [25, 75])  # NumPy's default (linear) = statistics' "inclusive" method
    assert stats["median"] == pytest.approx(np.median(samples))
    assert stats["iqr"] == pytest.approx(q3 - q1)
    assert stats["rel_spread"] == pytest.approx((q3 - q1) / np.median(samples))
    assert (stats["min"], stats["max"], stats["n"]) == (0.12, 0.55, 6)
    assert bench.summarize([2.0])["iqr"] == 0.0
    with pytest.raises(ValueError, match="at least one sample"):
        bench.summarize([])


def test_block_waits_on_every_array_leaf():
    class Pending:
        def __init__(self):
            self.waited = False

        def block_until_ready(self):
            self.waited = True
            return self

    tree = {"a": Pending(), "b": [Pending(), None, 3.0]}
    assert bench.block(tree) is tree
    assert tree["a"].waited and tree["b"][0].waited


def test_interleaved_rotates_and_separates_warmup():
    calls = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    stats = bench.interleaved(contenders, rounds=3, warmup=1)
    # round r starts at contender r % 3: warm-up a b c, then b c a, c a b, a b c
    assert calls == list("abc" + "bca" + "cab" + "abc")
    for name in "abc":
        assert stats[name]["n"] == 3 and stats[name]["first_s"] is not None
        assert stats[name]["cpu"]["n"] == 3 and stats[name]["compiles"] == 0


def test_interleaved_records_a_failing_contender_and_keeps_the_others():
    def broken():
        raise RuntimeError("out of memory")

    stats = bench.interleaved({"ok": lambda: None, "broken": broken}, rounds=2, warmup=0, on_error="record")
    assert stats["broken"] == {"error": "RuntimeError: out of memory"}
    assert stats["ok"]["n"] == 2
    with pytest.raises(RuntimeError):
        bench.interleaved({"broken": broken}, rounds=1, warmup=0)
    with pytest.raises(ValueError, match="on_error"):
        bench.interleaved({"ok": lambda: None}, on_error="ignore")


def test_compile_counter_counts_cache_misses_only():
    f = jax.jit(lambda v: v * 3.0 + 1.0)
    x = jnp.arange(5.0)
    x.block_until_ready()
    with bench.CompileCounter() as first:
        f(x).block_until_ready()
    with bench.CompileCounter() as again:
        f(x).block_until_ready()
    with bench.CompileCounter() as new_shape:
        f(jnp.arange(6.0)).block_until_ready()
    assert first.count >= 1 and again.count == 0 and new_shape.count >= 1


# ------------------------------------------------------------------------------------------------ FLOPs, peak, MFU
def test_step_cost_counts_matmul_flops_by_hand():
    m, k, n = 64, 32, 16
    cost = bench.step_cost(lambda a, b: a @ b, jnp.ones((m, k)), jnp.ones((k, n)))
    assert cost["flops"] == 2 * m * k * n  # one multiply and one add per term
    assert cost["compile_s"] > 0
    assert cost["memory"].get("output_size_in_bytes", m * n * 4) == m * n * 4
    lowered = bench.step_cost(lambda a, b: a @ b, jnp.ones((m, k)), jnp.ones((k, n)), compile=False)
    assert lowered["flops"] == 2 * m * k * n and lowered["memory"] == {}


class FakeDevice:
    platform = "gpu"

    def __init__(self, kind):
        self.device_kind = kind


def test_peak_flops_table_env_and_override(monkeypatch):
    monkeypatch.delenv(bench.PEAK_FLOPS_ENV, raising=False)
    assert bench.peak_flops(FakeDevice("NVIDIA H200"), "bf16") == 989.4e12
    assert bench.peak_flops(FakeDevice("NVIDIA H100 PCIe"), jnp.bfloat16) == 756e12
    assert bench.peak_flops(FakeDevice("NVIDIA A100-SXM4-80GB"), "float32") == 19.5e12
    assert bench.peak_flops(FakeDevice("TPU v5 lite"), "bf16") == 197e12
    assert bench.peak_flops(FakeDevice("cpu"), "bf16") is None
    assert bench.peak_flops(FakeDevice("cpu"), override=1e12) == 1e12
    monkeypatch.setenv(bench.PEAK_FLOPS_ENV, "7.9e14")
    assert bench.peak_flops(FakeDevice("NVIDIA H200")) == 7.9e14
    monkeypatch.setenv(bench.PEAK_FLOPS_ENV, "fast")
    with pytest.raises(ValueError, match="NNJAX_PEAK_FLOPS"):
        bench.peak_flops(FakeDevice("NVIDIA H200"))
    monkeypatch.delenv(bench.PEAK_FLOPS_ENV)
    with pytest.raises(ValueError, match="unknown dtype"):
        bench.peak_flops(FakeDevice("NVIDIA H200"), "int4")


def test_register_peak_flops_takes_precedence(monkeypatch):
    monkeypatch.delenv(bench.PEAK_FLOPS_ENV, raising=False)
    saved = list(bench.PEAK_FLOPS)
    try:
        bench.register_peak_flops("my accelerator", "bf16", 123e12)
        assert bench.peak_flops(FakeDevice("My Accelerator v1"), "bf16") == 123e12
        with pytest.raises(ValueError, match="positive"):
            bench.register_peak_flops("my accelerator", "bf16", 0)
    finally:
        bench.PEAK_FLOPS[:] = saved


def test_mfu_is_achieved_over_peak():
    # 2e12 FLOPs in 0.01 s = 2e14 FLOP/s, a quarter of an 8e14 peak
    assert bench.mfu(2e12, 0.01, 8e14) == pytest.approx(0.25)
    assert bench.mfu(2e12, 0.01, None) is None and bench.mfu(None, 0.01, 8e14) is None


# ------------------------------------------------------------------------------------------------ JSON results
def test_make_result_carries_provenance_and_is_plain_json(tmp_path, capsys):
    result = bench.make_result(
        "demo",
        [{"name": "a", "median_s": np.float32(0.5), "bad": float("nan")}, {"name": "b", "status": "skipped", "reason": "x"}],
        config={"batch": np.int64(8)},
        ratios={"a vs b": 1.25},
        notes=["n"],
        argv=["benchmarks/demo.py", "--flag", "two words"],
    )
    out = tmp_path / "r" / "demo.json"
    bench.write_result(result, str(out))
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads(out.read_text())
    assert printed == on_disk
    assert on_disk["schema"] == bench.SCHEMA_VERSION and on_disk["benchmark"] == "demo"
    assert on_disk["command"].endswith("benchmarks/demo.py --flag 'two words'")
    assert on_disk["versions"]["jax"] == jax.__version__
    assert on_disk["device"]["platform"] == jax.default_backend()
    assert on_disk["results"][0] == {"status": "ok", "name": "a", "median_s": 0.5, "bad": None}
    assert on_disk["results"][1]["status"] == "skipped" and on_disk["config"] == {"batch": 8}
    with pytest.raises(ValueError, match="'name'"):
        bench.make_result("demo", [{"median_s": 1.0}])


# ------------------------------------------------------------------------------------------------ fit: no recompiles
@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_fit_does_not_recompile_between_epochs_or_for_the_partial_batch(steps_per_execution):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 5)).astype(np.float32)  # 150 = 9 * 16 + 6: a partial last batch every epoch
    y = rng.integers(0, 3, 150).astype(np.int32)
    model = nj.Sequential([nj.layers.Dense(8, activation="relu", input_shape=(5,)), nj.layers.Dense(3)])
    model.compile(optimizer="adam", loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  steps_per_execution=steps_per_execution, seed=0)  # fmt: skip
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # warm-up: compiles the full, single and partial steps
    with bench.CompileCounter() as compiles:
        model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert compiles.count == 0
    assert int(model.state.step) == 4 * 10


def test_reading_the_state_during_fit_does_not_change_training():
    """fit keeps the TrainState flat between steps; a callback that reads or replaces it sees the real state.

    Reference: plain NumPy SGD on a linear model with mean squared error, batches in order.
    """
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3).astype(np.float32)
    model = nj.Sequential([nj.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer=nj.optimizers.SGD(0.1), loss="mse", seed=0)
    kernel0, bias0 = model.layers[0].kernel[...], model.layers[0].bias[...]
    w, b = np.array(kernel0, np.float64), np.array(bias0, np.float64)

    class Reader(nj.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.steps = []

        def on_train_batch_end(self, batch, logs=None):
            state = self.model.state  # rebuilds the tree from the flat leaves
            self.steps.append(int(state.step))
            if batch == 1:  # replacing it must be picked up by the next step
                self.model.state = state.replace(params=jax.tree.map(jnp.array, state.params))

    reader = Reader()
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0, callbacks=[reader])
    for _ in range(2):
        for start in range(0, 12, 4):
            xb, yb = x[start : start + 4].astype(np.float64), y[start : start + 4].astype(np.float64)
            error = xb @ w + b - yb
            grad_w, grad_b = 2 * xb.T @ error / error.size, 2 * error.sum(0) / error.size
            w, b = w - 0.1 * grad_w, b - 0.1 * grad_b
    assert reader.steps == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(model.layers[0].kernel[...], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.layers[0].bias[...], b, rtol=1e-5, atol=1e-6)
    assert math.isfinite(model.history.history["loss"][-1])
