"""DataParallel, FSDP and ModelParallel on 8 forced CPU devices (tests/conftest.py) equal one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj
from nnjax import parallel

TOL = 1e-5  # absolute, on losses and on every weight


def _flat(digits, n=None):
    (x, y), _ = digits
    x = x.reshape(len(x), -1)
    return (x, y) if n is None else (x[:n], y[:n])


def _bn_model():
    nj.utils.set_random_seed(0)
    return nj.Sequential(
        [
            nj.layers.Dense(32, use_bias=False),  # no bias before BatchNorm: its gradient is zero
            nj.layers.BatchNormalization(),
            nj.layers.Activation("relu"),
            nj.layers.Dense(10, activation="softmax"),
        ]
    )


def _fit(build, x, y, distribution, *, epochs=2, batch_size=64, optimizer="adam"):
    model = build()
    model.compile(
        optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"], distribution=distribution, seed=1
    )
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return model, history.history


def _assert_same_training(result, reference):
    (model, history), (ref_model, ref_history) = result, reference
    for name in ref_history:
        np.testing.assert_allclose(history[name], ref_history[name], rtol=0, atol=TOL, err_msg=name)
    weights, ref_weights = model.get_weights(), ref_model.get_weights()
    assert len(weights) == len(ref_weights)
    for w, r in zip(weights, ref_weights, strict=True):
        np.testing.assert_allclose(w, r, rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def one_device_bn(digits):
    x, y = _flat(digits)
    return _fit(_bn_model, x, y, None)


@pytest.mark.parametrize("num_devices", [8, 4])
def test_data_parallel_batchnorm_equals_one_device(digits, one_device_bn, num_devices):
    x, y = _flat(digits)  # 1437 examples: 22 batches of 64 and a last one of 29, split unevenly
    strategy = parallel.DataParallel(jax.devices()[:num_devices])
    result = _fit(_bn_model, x, y, strategy)
    _assert_same_training(result, one_device_bn)
    model = result[0]
    kernel = jax.tree.leaves(model.state.params)[-1]
    assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == num_devices
    # A running BatchNorm statistic is a mean over the global batch, as on one device.
    ref_stats = jax.tree.leaves(one_device_bn[0].state.model_state)
    for a, b in zip(jax.tree.leaves(model.state.model_state), ref_stats, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=TOL)


def test_data_parallel_evaluate_and_predict_match_numpy(digits):
    x, y = _flat(digits, 200)
    model = nj.Sequential([nj.layers.Dense(10, activation="softmax")])
    model.compile(
        optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"], distribution=parallel.DataParallel()
    )
    model.build((None, 64))
    kernel, bias = sorted(model.get_weights(), key=lambda w: -w.ndim)
    logits = x.astype(np.float64) @ kernel + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, batch_size=64, verbose=0), probs, rtol=1e-5, atol=1e-6)
    loss, accuracy = model.evaluate(x, y, batch_size=40, verbose=0)
    assert loss == pytest.approx(float(np.mean(-np.log(probs[np.arange(len(y)), y]))), rel=1e-5)
    assert accuracy == pytest.approx(float(np.mean(probs.argmax(1) == y)), abs=1e-6)


def test_indivisible_batch_size_is_a_clear_error_before_compiling(digits):
    x, y = _flat(digits, 100)
    model = nj.Sequential([nj.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", distribution=parallel.DataParallel())
    with pytest.raises(ValueError, match=r"batch_size=30 cannot be split over the 8 devices.*multiple of 8.*received 30"):
        model.fit(x, y, batch_size=30, verbose=0)
    assert not model.history.history  # nothing ran


def test_strategy_arguments_are_checked():
    with pytest.raises(ValueError, match="data_axis 'batch' must name axes of the mesh"):
        parallel.DataParallel(mesh=parallel.make_mesh(), data_axis="batch")
    with pytest.raises(ValueError, match=r"a mesh of shape \(3,\) needs 3 devices; received 8"):
        parallel.make_mesh((3,))
    with pytest.raises(TypeError, match="must be a jax.sharding.Mesh"):
        parallel.ModelParallel(jax.devices())


def _fsdp_model():
    nj.utils.set_random_seed(3)
    return nj.Sequential([nj.layers.Dense(128, activation="relu"), nj.layers.Dense(10, activation="softmax")])


def test_fsdp_shards_large_parameters_and_equals_replicated(digits):
    x, y = _flat(digits, 1024)
    reference = _fit(_fsdp_model, x, y, parallel.DataParallel())
    strategy = parallel.FSDP(min_size=1024)
    result = _fit(_fsdp_model, x, y, strategy)
    _assert_same_training(result, reference)
    state = result[0].state
    large = 0
    for tree in (state.params, state.opt_state):
        for leaf in jax.tree.leaves(tree):
            shards = leaf.addressable_shards
            assert len(shards) == 8
            if leaf.size >= 1024:  # kernels (64, 128), (128, 10) and their Adam moments
                large += 1
                assert sum(s.data.size for s in shards) == leaf.size  # no copy anywhere: 1/8 each
                assert all(s.data.size * 8 == leaf.size for s in shards)
            else:
                assert all(s.data.shape == leaf.shape for s in shards)  # small: replicated
    assert large == 2 * 3  # two kernels, each with Adam's mu and nu


class _Annotated(nnx.Module):
    """An MLP whose hidden layer is split over the "model" axis (Megatron style)."""

    def __init__(self, rngs, annotate=True):
        def part(init, names):  # the annotation does not change the initial values
            return nnx.with_partitioning(init, names) if annotate else init

        kernel_init, zeros = nnx.initializers.lecun_normal(), nnx.initializers.zeros
        self.up = nnx.Linear(64, 32, kernel_init=part(kernel_init, (None, "model")), bias_init=part(zeros, ("model",)), rngs=rngs)
        self.down = nnx.Linear(32, 10, kernel_init=part(kernel_init, ("model", None)), rngs=rngs)

    def __call__(self, x):
        return jax.nn.softmax(self.down(jax.nn.relu(self.up(x))))


@pytest.mark.parametrize("strategy_name", ["model_parallel", "fsdp"])
def test_model_axis_sharding_on_a_2d_mesh_equals_one_device(digits, strategy_name):
    x, y = _flat(digits, 512)
    mesh = parallel.make_mesh((2, 4), ("data", "model"))
    with jax.set_mesh(mesh):
        annotated = _Annotated(nnx.Rngs(0))
    ref_model = nj.Model(_Annotated(nnx.Rngs(0), annotate=False))  # one device, the same initial weights
    ref_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=1)
    ref_history = ref_model.fit(x, y, batch_size=32, epochs=2, verbose=0).history

    strategy = parallel.ModelParallel(mesh) if strategy_name == "model_parallel" else parallel.FSDP(mesh=mesh, min_size=256)
    model = nj.Model(annotated)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=1, distribution=strategy)
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    _assert_same_training((model, history), (ref_model, ref_history))

    up_kernel = model.state.params["up"]["kernel"][...]
    down_kernel = model.state.params["down"]["kernel"][...]
    expected_up = (64 // 2, 32 // 4) if strategy_name == "fsdp" else (64, 32 // 4)  # FSDP adds "data" on axis 0
    expected_down = (32 // 4, 10 // 2) if strategy_name == "fsdp" else (32 // 4, 10)  # 320 elements >= min_size
    assert {s.data.shape for s in up_kernel.addressable_shards} == {expected_up}
    assert {s.data.shape for s in down_kernel.addressable_shards} == {expected_down}
    moments = [leaf for leaf in jax.tree.leaves(model.state.opt_state) if leaf.shape == (64, 32)]
    assert moments and all({s.data.shape for s in m.addressable_shards} == {expected_up} for m in moments)


def test_unknown_annotation_axis_is_a_clear_error():
    mesh = parallel.make_mesh((8,), ("data",))
    with jax.set_mesh(parallel.make_mesh((2, 4), ("data", "model"))):
        module = _Annotated(nnx.Rngs(0))
    model = nj.Model(module)
    model.compile(optimizer="sgd", loss="mse", distribution=parallel.ModelParallel(mesh))
    with pytest.raises(ValueError, match=r"annotated with .*'model'.* mesh has axes \('data',\)"):
        model.fit(np.zeros((8, 64), np.float32), np.zeros((8, 10), np.float32), batch_size=8, verbose=0)


def test_custom_loop_with_a_strategy_equals_jit_on_one_device(digits):
    x, y = _flat(digits, 256)
    model = _fsdp_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", seed=0)
    model.build((None, 64))
    state0 = jax.tree.map(jnp.copy, model.state)
    strategy = parallel.FSDP()
    step = jax.jit(nj.train.train_step)
    sharded, single = strategy.place_state(jax.tree.map(jnp.copy, state0)), state0
    for i in range(4):
        batch = (x[i * 64 : (i + 1) * 64], y[i * 64 : (i + 1) * 64])
        sharded, m_sharded = step(sharded, strategy.shard_batch(batch))
        single, m_single = step(single, batch)
        assert float(m_sharded["loss"]) == pytest.approx(float(m_single["loss"]), abs=TOL)
    for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(single.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=TOL)
    with pytest.raises(ValueError, match="batch_size=10 cannot be split over the 8 devices"):
        strategy.shard_batch((x[:10], y[:10]))
