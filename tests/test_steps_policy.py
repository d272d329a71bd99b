"""`steps_per_execution="auto"` (the default): what it measures and chooses, that only the grouping of steps
changes (never the numbers), no recompilation after the first epoch, and the throughput fit reports."""

import io

import numpy as np
import pytest

import nnjax as nj
from nnjax import bench

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4096, 16)).astype(np.float32)
Y = (X[:, :4].argmax(1)).astype(np.int32)


def mlp(steps_per_execution="auto", seed=0):
    nj.utils.set_random_seed(seed)
    model = nj.Sequential([nj.layers.Dense(32, activation="relu"), nj.layers.Dense(4, activation="softmax")])
    model.build((None, 16))  # now: the same weights for every model made with this seed
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], seed=seed,
                  steps_per_execution=steps_per_execution)
    return model


def test_auto_measures_candidates_keeps_the_fastest_and_picks_a_scan_for_a_small_mlp():
    model = mlp()
    history = model.fit(X, Y, batch_size=8, epochs=1, verbose=0)  # 512 steps: room for every candidate
    choice = model.fit_loop.steps_choice
    assert choice.reason == "measured" and sorted(choice.steps_per_second) == [1, 4, 16, 64]
    assert choice.steps_per_execution == max(choice.steps_per_second, key=choice.steps_per_second.get)
    # Dispatch dominates a step this small: a scanned execution wins by far on any device.
    assert choice.steps_per_execution > 1
    assert history.steps_per_execution is choice
    again = model.fit(X[:1024], Y[:1024], batch_size=8, epochs=1, verbose=0)
    assert model.fit_loop.steps_choice.reason == "remembered"
    assert again.throughput[0]["steps_per_execution"] == choice.steps_per_execution


def test_auto_computes_exactly_what_one_step_per_execution_computes():
    auto, single = mlp(), mlp(1)
    a = auto.fit(X[:2048], Y[:2048], batch_size=8, epochs=2, verbose=0).history
    b = single.fit(X[:2048], Y[:2048], batch_size=8, epochs=2, verbose=0).history
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
    for wa, wb in zip(auto.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_no_recompilation_after_the_first_epoch():
    model = mlp()

    class Count(nj.callbacks.Callback):
        execution_aware = True

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                self.counter = bench.CompileCounter().__enter__()

        def on_train_end(self, logs=None):
            self.counter.__exit__(None, None, None)

    count = Count()
    model.fit(X[:2000], Y[:2000], batch_size=8, epochs=3, verbose=0, callbacks=[count])  # 250 steps: a remainder per epoch
    assert model.fit_loop.steps_choice.reason == "measured"
    assert count.counter.count == 0


def test_a_per_batch_callback_gets_one_step_per_execution_and_keras_logs():
    seen = {}

    class PerBatch(nj.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.logs = []

        def on_train_batch_end(self, batch, logs=None):
            self.logs.append((batch, logs["loss"]))

    auto, single = PerBatch(), PerBatch()
    model = mlp()
    model.fit(X[:256], Y[:256], batch_size=8, epochs=1, verbose=0, callbacks=[auto])
    assert model.fit_loop.steps_choice.reason == "per-batch callbacks"
    mlp(1).fit(X[:256], Y[:256], batch_size=8, epochs=1, verbose=0, callbacks=[single])
    seen["batches"] = [b for b, _ in auto.logs]
    assert seen["batches"] == list(range(32))
    np.testing.assert_allclose([v for _, v in auto.logs], [v for _, v in single.logs], rtol=1e-6)


def test_throughput_is_in_the_history_the_progress_line_and_tokens_for_sequences(monkeypatch):
    model = mlp()
    stream = io.StringIO()
    history = model.fit(X[:512], Y[:512], batch_size=8, epochs=2, verbose=2,
                        callbacks=[nj.callbacks.ProgbarLogger(verbose=2, stream=stream)])
    assert [t["epoch"] for t in history.throughput] == [0, 1]
    for t in history.throughput:
        assert t["examples_per_second"] == pytest.approx(512 / t["seconds"], rel=1e-9)
        assert t["steps_per_second"] == pytest.approx(64 / t["seconds"], rel=1e-9)
    out = stream.getvalue()
    assert " examples/s - " in out
    assert "steps_per_execution=auto -> " in out and "(measured; steps/s 1: " in out

    tokens = RNG.integers(0, 50, size=(64, 12)).astype(np.int32)
    lm = nj.Sequential([nj.layers.Embedding(50, 8), nj.layers.GlobalAveragePooling1D(), nj.layers.Dense(4, activation="softmax")])
    lm.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=0)
    t = lm.fit(tokens, Y[:64], batch_size=16, epochs=1, verbose=0).throughput[0]
    assert t["tokens_per_second"] == pytest.approx(12 * t["examples_per_second"], rel=1e-9)

    monkeypatch.setenv(bench.PEAK_FLOPS_ENV, "1e12")  # a stated peak: fit reports MFU from XLA's cost analysis
    model = mlp(4)
    t = model.fit(X[:512], Y[:512], batch_size=8, epochs=1, verbose=0).throughput[0]
    flops = model.fit_memory.flops_per_step(model, model.fit_loop.source)
    assert flops > 0 and t["mfu"] == pytest.approx(flops * t["steps_per_second"] / 1e12, rel=1e-9)


def _batches(n_examples, batch_size):
    """A generator of host batches (a streaming source: nothing is device-resident)."""
    def gen():
        for start in range(0, n_examples, batch_size):
            yield X[start:start + batch_size], Y[start:start + batch_size]
    return gen


def test_auto_measures_on_streamed_batches_and_computes_what_single_steps_compute():
    auto, single = mlp(), mlp(1)
    a = auto.fit(_batches(4096, 8)(), epochs=1, verbose=0, steps_per_epoch=512)
    choice = auto.fit_loop.steps_choice
    assert choice.reason == "measured" and sorted(choice.steps_per_second) == [1, 4, 16, 64]
    assert choice.steps_per_execution == max(choice.steps_per_second, key=choice.steps_per_second.get)
    b = single.fit(_batches(4096, 8)(), epochs=1, verbose=0, steps_per_epoch=512)
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-6)
    for wa, wb in zip(auto.get_weights(), single.get_weights(), strict=True):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_auto_on_a_stream_shorter_than_its_plan_keeps_what_it_measured():
    model = mlp()
    history = model.fit(_batches(8 * 40, 8)(), epochs=1, verbose=0)  # 40 steps, unknown length: the plan is cut short
    choice = model.fit_loop.steps_choice
    assert choice.reason in ("measured", "short epoch")
    if choice.reason == "measured":
        assert len(choice.steps_per_second) >= 2
    assert len(history.history["loss"]) == 1
