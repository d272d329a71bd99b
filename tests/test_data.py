"""nnjax.data: deterministic order, exact resume, sharding, edge cases, generators, prefetch, fit integration.

References are NumPy: the order of epoch `e` is `np.random.default_rng([seed, e]).permutation(N)`
(the documented contract), batches are slices of it, a process's share is its slice of each global batch.
"""

import json
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj

N, H, CLASSES = 103, 6, 4


def examples(n=N, *, label_dtype=np.int32):
    """A list of `(x, y)` examples: x_i is a (6,) vector whose first entry is i."""
    rng = np.random.default_rng(123)
    xs = rng.normal(size=(n, H)).astype(np.float32)
    xs[:, 0] = np.arange(n)
    ys = (np.arange(n) % CLASSES).astype(label_dtype)
    return [(xs[i], ys[i]) for i in range(n)], xs, ys


def reference_batches(xs, ys, *, seed, epoch, batch_size, drop_remainder=False, shuffle=True):
    order = np.random.default_rng([seed, epoch]).permutation(len(xs)) if shuffle else np.arange(len(xs))
    cuts = range(0, len(xs), batch_size)
    out = [(xs[order[c : c + batch_size]], ys[order[c : c + batch_size]]) for c in cuts]
    if drop_remainder and len(out[-1][0]) < batch_size:
        out = out[:-1]
    return out


def assert_batches_equal(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g[0], e[0])
        np.testing.assert_array_equal(g[1], e[1])


@pytest.mark.parametrize("num_threads", [0, 2])
def test_order_is_a_pure_function_of_seed_and_epoch(num_threads):
    records, xs, ys = examples()
    for epoch in (0, 3):
        a = list(nj.data.Dataset(records, batch_size=16, seed=7, num_threads=num_threads).batches(epoch))
        b = list(nj.data.Dataset(records, batch_size=16, seed=7, num_threads=num_threads).batches(epoch))
        expected = reference_batches(xs, ys, seed=7, epoch=epoch, batch_size=16)
        assert_batches_equal(a, expected)
        assert_batches_equal(b, expected)
        assert all(batch[2] is None for batch in a)
    first_other_seed = next(iter(nj.data.Dataset(records, batch_size=16, seed=8).batches(0)))
    assert not np.array_equal(first_other_seed[0], expected[0][0])


def test_resume_mid_epoch_yields_exactly_the_remaining_batches():
    records, xs, ys = examples()

    def augment(example, rng):  # random per example, seeded by (seed, epoch, index)
        x, y = example
        return x + rng.normal(size=x.shape).astype(np.float32), y

    def make():
        return nj.data.Dataset(records, batch_size=10, seed=3, transform=augment, num_threads=2)

    steps = make().steps_per_epoch
    assert steps == 11  # ceil(103 / 10)
    stop = int(np.random.default_rng().integers(1, 2 * steps - 1))  # a random step of two epochs
    full = [b for b in make().iterator(num_epochs=2)]
    it = make().iterator(num_epochs=2)
    seen = [next(it) for _ in range(stop)]
    state = json.loads(json.dumps(it.get_state()))
    assert state["epoch"] == stop // steps and state["step"] == stop % steps
    fresh = make().iterator(num_epochs=2)
    fresh.set_state(state)
    rest = list(fresh)
    assert len(seen) + len(rest) == len(full) == 2 * steps
    for got, expected in zip(seen + rest, full, strict=True):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    # The labels and the unaugmented ids follow the NumPy reference order.
    reference = reference_batches(xs, ys, seed=3, epoch=0, batch_size=10) + reference_batches(
        xs, ys, seed=3, epoch=1, batch_size=10
    )
    for got, (rx, ry) in zip(full, reference, strict=True):
        np.testing.assert_array_equal(got[1], ry)
        assert np.abs(got[0] - rx).max() > 0  # augmented
        np.testing.assert_array_less(np.abs(got[0][:, 0] - rx[:, 0]), 6.0)  # normal noise around the id


def test_set_state_rejects_a_position_of_another_dataset():
    records, _, _ = examples()
    state = nj.data.Dataset(records, batch_size=10, seed=3).iterator().get_state()
    with pytest.raises(ValueError, match="different dataset.*batch_size: saved 10, this dataset 12"):
        nj.data.Dataset(records, batch_size=12, seed=3).iterator(state)
    with pytest.raises(ValueError, match="outside the dataset"):
        nj.data.Dataset(records, batch_size=10, seed=3).iterator({**state, "step": 50})


def test_last_partial_batch_and_drop_remainder():
    records, xs, ys = examples(10)
    kept = list(nj.data.Dataset(records, batch_size=4, seed=0).batches(0))
    assert [len(b[0]) for b in kept] == [4, 4, 2]
    assert_batches_equal(kept, reference_batches(xs, ys, seed=0, epoch=0, batch_size=4))
    dropped = list(nj.data.Dataset(records, batch_size=4, seed=0, drop_remainder=True).batches(0))
    assert [len(b[0]) for b in dropped] == [4, 4]
    assert_batches_equal(dropped, reference_batches(xs, ys, seed=0, epoch=0, batch_size=4, drop_remainder=True))


def test_batch_larger_than_dataset_is_one_short_batch_or_a_clear_error():
    records, xs, ys = examples(10)
    ds = nj.data.Dataset(records, batch_size=64, shuffle=False)
    (only,) = list(ds.batches(0))
    np.testing.assert_array_equal(only[0], xs)
    with pytest.raises(ValueError, match="batch_size`=64 is larger than the dataset \\(10 examples\\) with drop_remainder=True"):
        nj.data.Dataset(records, batch_size=64, drop_remainder=True)


def test_empty_source_and_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="is empty: expected at least one example; received 0"):
        nj.data.Dataset([], batch_size=4)
    records, _, _ = examples(10)
    with pytest.raises(ValueError, match="`batch_size` must be a positive int; got 0"):
        nj.data.Dataset(records, batch_size=0)
    with pytest.raises(ValueError, match="start_step` must be in \\[0, 3\\]; got 9"):
        list(nj.data.Dataset(records, batch_size=4).batches(0, 9))


def test_labels_that_change_dtype_raise_naming_the_batch():
    def gen():
        yield np.zeros((4, 3), np.float32), np.zeros(4, np.int32)
        yield np.zeros((4, 3), np.float32), np.zeros(4, np.float32)

    source = nj.data.from_generator(gen)
    with pytest.raises(
        ValueError, match=r"batch 1 of epoch 0: `y \(labels\)` changed dtype or shape: the first batch had dtype int32"
    ):
        list(source.batches(0))


def test_fit_rejects_fractional_and_string_labels_before_compiling():
    records, _, _ = examples(20)
    fractional = [(x, np.float32(y) + 0.5) for x, y in records]
    model = nj.Sequential([nj.layers.Dense(CLASSES, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="expects integer class ids; received labels of dtype float32 with non-integer values"):
        model.fit(nj.data.Dataset(fractional, batch_size=5, seed=0), verbose=0)
    strings = [(x, str(y)) for x, y in records]
    with pytest.raises(ValueError, match="expects integer class ids; received labels of dtype <U"):
        model.fit(nj.data.Dataset(strings, batch_size=5, seed=0), verbose=0)


def test_each_process_reads_its_slice_of_every_global_batch():
    records, xs, ys = examples(96)
    reference = reference_batches(xs, ys, seed=5, epoch=2, batch_size=12)
    shards = [
        list(nj.data.Dataset(records, batch_size=12, seed=5, process_index=p, process_count=3).batches(2)) for p in range(3)
    ]
    for step, (rx, ry) in enumerate(reference):
        for p in range(3):
            np.testing.assert_array_equal(shards[p][step][0], rx[4 * p : 4 * (p + 1)])
            np.testing.assert_array_equal(shards[p][step][1], ry[4 * p : 4 * (p + 1)])
    with pytest.raises(ValueError, match="global `batch_size`=10 must be divisible by the number of processes \\(3\\)"):
        nj.data.Dataset(records, batch_size=10, process_index=0, process_count=3)
    with pytest.raises(
        ValueError, match="last global batch has 5 examples, which 2 processes cannot share evenly; pass drop_remainder=True"
    ):
        nj.data.Dataset(records[:21], batch_size=8, process_index=0, process_count=2)


def test_transforms_numpy_per_example_and_jax_per_batch():
    records, xs, ys = examples(12)

    def scale(example):
        x, y = example
        return x * 2.0, y

    @jax.jit
    def center(batch):
        x, y, w = batch
        return x - jnp.mean(x, axis=0), y

    ds = nj.data.Dataset(records, batch_size=6, shuffle=False, transform=scale, batch_transform=center)
    batches = list(ds.batches(0))
    for k, (x, y, w) in enumerate(batches):
        rx = xs[6 * k : 6 * (k + 1)] * 2.0
        np.testing.assert_allclose(x, rx - rx.mean(axis=0), rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(y, ys[6 * k : 6 * (k + 1)])
        assert w is None and isinstance(x, np.ndarray)


def test_cached_and_uncached_reads_agree():
    records, xs, ys = examples()
    reference = reference_batches(xs, ys, seed=1, epoch=4, batch_size=32)
    for cache in (True, False):
        assert_batches_equal(list(nj.data.Dataset(records, batch_size=32, seed=1, cache=cache).batches(4)), reference)


def test_generator_function_restarts_each_epoch_and_resumes_by_skipping():
    _, xs, ys = examples(40)

    def gen():
        for i in range(0, 40, 10):
            yield xs[i : i + 10], ys[i : i + 10]

    source = nj.data.from_generator(gen)
    for epoch in (0, 1):
        got = list(source.batches(epoch))
        assert_batches_equal(got, [(xs[i : i + 10], ys[i : i + 10]) for i in range(0, 40, 10)])
    rest = list(source.batches(0, start_step=2))
    assert_batches_equal(rest, [(xs[i : i + 10], ys[i : i + 10]) for i in (20, 30)])
    one_pass = nj.data.from_generator(gen(), steps_per_epoch=3)
    np.testing.assert_array_equal(one_pass.peek()[0], xs[:10])  # peek does not consume
    assert [b[0][0, 0] for b in one_pass.batches(0)] == [0, 10, 20]
    assert [b[0][0, 0] for b in one_pass.batches(1)] == [30]
    with pytest.raises(TypeError, match="expected a generator function or an iterator"):
        nj.data.from_generator(42)


def test_generators_feed_fit_evaluate_and_predict(digits):
    (x, y), (x_test, y_test) = digits

    def train_batches():
        for i in range(0, 256, 64):
            yield x[i : i + 64], y[i : i + 64]

    def test_batches():
        for i in range(0, 100, 50):
            yield x_test[i : i + 50], y_test[i : i + 50]

    model = nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], seed=0)
    history = model.fit(train_batches, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    loss, _ = model.evaluate(test_batches, verbose=0)
    probs = model.predict(nj.data.from_generator(test_batches))
    assert probs.shape == (100, 10)
    y_one_hot = np.eye(10)[y_test[:100]]
    np.testing.assert_allclose(loss, -np.mean(np.sum(y_one_hot * np.log(probs), axis=1)), rtol=1e-4)
    with pytest.raises(ValueError, match="fit: `y` must be None when `x` is a dataset or generator"):
        model.fit(train_batches(), y, verbose=0)
    with pytest.raises(ValueError, match="fit: `batch_size` must be None when `x` is a generator"):
        model.fit(train_batches(), batch_size=8, verbose=0)


def test_group_executions_never_pulls_past_max_steps():
    pulled = []

    def batches():
        for size in (4, 4, 4, 4, 4, 2):
            pulled.append(size)
            yield (np.zeros((size, 1)), None, None)

    groups = [[len(b[0]) for b in g] for g in nj.data.group_executions(batches(), 3)]
    assert groups == [[4, 4, 4], [4, 4], [2]]
    pulled.clear()
    groups = [[len(b[0]) for b in g] for g in nj.data.group_executions(batches(), 2, max_steps=3)]
    assert groups == [[4, 4], [4]] and len(pulled) == 3


def test_prefetch_to_device_orders_places_propagates_errors_and_stops():
    placed = list(nj.data.prefetch_to_device(iter(range(5)), put=lambda i: jnp.full((2,), i)))
    assert [int(a[0]) for a in placed] == [0, 1, 2, 3, 4] and isinstance(placed[0], jax.Array)

    def failing():
        yield 1
        raise RuntimeError("reader broke at item 1")

    with pytest.raises(RuntimeError, match="reader broke at item 1"):
        with nj.data.prefetch_to_device(failing()) as items:
            list(items)
    with nj.data.prefetch_to_device(iter(range(10**6)), size=2) as items:
        for i in items:
            if i == 3:
                break
    assert not any(t.name == "nnjax-prefetch" and t.is_alive() for t in threading.enumerate())


class RecordingDistribution:
    """The distribution hooks `fit` calls, recording `place_batches`."""

    def __init__(self):
        self.placed_shapes = []

    def place_state(self, state):
        return state

    def place_data(self, arrays):
        return jax.device_put(arrays)

    def place_batches(self, stacked):
        self.placed_shapes.append(stacked[0].shape)
        return jax.device_put(stacked)

    def constrain_batch(self, batch):
        return batch


def test_streaming_fit_matches_in_memory_fit_and_places_batches_with_the_distribution(digits):
    (x, y), _ = digits
    x, y = x[:300], y[:300]

    def build(distribution=None):
        model = nj.Sequential(
            [
                nj.layers.Flatten(input_shape=(8, 8)),
                nj.layers.Dense(16, activation="relu"),
                nj.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", seed=11, steps_per_execution=3, distribution=distribution
        )
        return model

    in_memory = build()
    in_memory.set_weights([np.full_like(w, 0.01 * (i + 1)) for i, w in enumerate(in_memory.get_weights())])
    in_memory.fit(x, y, batch_size=32, epochs=2, verbose=0)
    distribution = RecordingDistribution()
    streamed = build(distribution)
    streamed.set_weights([np.full_like(w, 0.01 * (i + 1)) for i, w in enumerate(streamed.get_weights())])
    records = [(x[i], y[i]) for i in range(len(x))]
    streamed.fit(nj.data.Dataset(records, batch_size=32, seed=11, num_threads=2), epochs=2, verbose=0)
    for a, b in zip(in_memory.get_weights(), streamed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # 10 batches per epoch (9 full + 12 examples): executions of 3, 3, 3 full batches, then the short one alone.
    assert distribution.placed_shapes == [(3, 32, 8, 8), (3, 32, 8, 8), (3, 32, 8, 8), (1, 12, 8, 8)] * 2


def test_stop_training_mid_epoch_stops_the_prefetch_thread(digits):
    (x, y), _ = digits

    class StopAt(nj.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    model = nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", seed=0)
    records = [(x[i], y[i]) for i in range(len(x))]
    model.fit(nj.data.Dataset(records, batch_size=16, seed=0), epochs=3, verbose=0, callbacks=[StopAt()])
    assert int(model.state.step) == 3  # steps 0, 1, 2 ran; the prefetched ones were dropped
    assert not any(t.name == "nnjax-prefetch" and t.is_alive() for t in threading.enumerate())


def test_array_source_iterator_state_round_trips():
    _, xs, ys = examples(50)
    source = nj.data.ArraySource(xs, ys, batch_size=8, seed=9)
    it = source.iterator(num_epochs=2)
    for _ in range(9):  # 7 batches per epoch: stop at epoch 1, step 2
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    assert (state["epoch"], state["step"]) == (1, 2)
    rest = list(nj.data.ArraySource(xs, ys, batch_size=8, seed=9).iterator(state, num_epochs=2))
    assert_batches_equal(rest, reference_batches(xs, ys, seed=9, epoch=1, batch_size=8)[2:])


def test_fit_resumed_mid_epoch_trains_on_exactly_the_remaining_batches(digits):
    (x, y), _ = digits
    records = [(x[i], y[i]) for i in range(200)]

    def build():
        model = nj.Sequential([nj.layers.Flatten(input_shape=(8, 8)), nj.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=0)
        model.set_weights([np.full_like(w, 0.02 * (i + 1)) for i, w in enumerate(model.get_weights())])
        return model

    class ResumeAt(nj.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model.fit_loop.resume(epoch=0, step=4)

    whole = build()
    whole.fit(nj.data.Dataset(records, batch_size=16, seed=6), epochs=1, verbose=0)
    resumed = build()
    resumed.fit(nj.data.Dataset(records, batch_size=16, seed=6), epochs=1, steps_per_epoch=4, verbose=0)
    resumed.fit(nj.data.Dataset(records, batch_size=16, seed=6), epochs=1, verbose=0, callbacks=[ResumeAt()])
    assert int(resumed.state.step) == int(whole.state.step) == 13
    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
