"""Training controls: schedules, mixed precision and loss scaling, clipping, accumulation, weight decay,
the non-finite policy, EMA of weights, steps_per_execution, summary FLOPs.

Every number is checked against a NumPy hand computation or a hand count.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import nnjax as nj
from nnjax.train import ema, nonfinite, precision, schedules


# ---------------------------------------------------------------------------------------------- helpers
def linear_model(units=2, features=3, seed=0):
    """Dense(units) on (features,) inputs with fixed, known weights; returns (model, kernel, bias)."""
    model = nj.Sequential([nj.layers.Dense(units, input_shape=(features,))])
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(features, units)).astype(np.float32)
    bias = rng.normal(size=(units,)).astype(np.float32)
    return model, kernel, bias


def set_linear(model, kernel, bias):
    model.set_weights([kernel, bias])  # Keras's order: kernel, then bias


def get_linear(model):
    weights = model.get_weights()
    bias = next(w for w in weights if w.ndim == 1)
    kernel = next(w for w in weights if w.ndim == 2)
    return kernel.astype(np.float64), bias.astype(np.float64)


def mse_grads(kernel, bias, x, y):
    """Gradients of mean((x @ kernel + bias - y) ** 2) over every element, in float64."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    residual = x @ kernel + bias - y
    d_pred = 2.0 * residual / residual.size
    return x.T @ d_pred, d_pred.sum(axis=0)


def regression_data(n=8, features=3, units=2, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.normal(size=(n, units)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize(
    "schedule, step, expected",
    [
        (schedules.ExponentialDecay(0.1, 10, 0.5), 20, 0.025),
        (schedules.ExponentialDecay(0.1, 10, 0.5), 5, 0.1 * math.sqrt(0.5)),
        (schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True), 15, 0.05),
        (schedules.InverseTimeDecay(1.0, 10, 0.5), 20, 0.5),
        (schedules.InverseTimeDecay(1.0, 10, 0.5, staircase=True), 15, 1 / 1.5),
        (schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 10, 1.0),
        (schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 11, 0.5),
        (schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]), 21, 0.1),
        (schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0), 5, 0.09 * 0.25 + 0.01),
        (schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0), 20, 0.01),
        (schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0, cycle=True), 15, 0.09 * 0.0625 + 0.01),
        (schedules.CosineDecay(1.0, 100, alpha=0.1), 50, 0.55),
        (schedules.CosineDecay(1.0, 100, alpha=0.1), 200, 0.1),
        (schedules.CosineDecay(0.0, 100, warmup_target=1.0, warmup_steps=10), 5, 0.5),
        (schedules.CosineDecay(0.0, 100, warmup_target=1.0, warmup_steps=10), 60, 0.5),
        (schedules.CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5), 5, 0.5),
        (schedules.CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5), 10, 0.5),
        (schedules.CosineDecayRestarts(1.0, 10, t_mul=2.0, m_mul=0.5), 20, 0.25),
        (schedules.CosineDecayRestarts(1.0, 10, t_mul=1.0, m_mul=0.5), 15, 0.25),
        (schedules.get("CosineDecay", initial_learning_rate=2.0, decay_steps=10), 10, 0.0),
    ],
)
def test_keras_schedules_match_hand_values(schedule, step, expected):
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_schedule_errors_name_the_argument():
    with pytest.raises(ValueError, match="len\\(values\\) == len\\(boundaries\\) \\+ 1"):
        schedules.PiecewiseConstantDecay([1, 2], [1.0])
    with pytest.raises(ValueError, match="expected one of"):
        schedules.get("cosine")


def test_optax_schedule_rate_is_logged_per_epoch():
    """With a schedule, History's learning_rate is the rate of each epoch's last step: schedule(steps - 1)."""
    x, y = regression_data(n=32)
    schedule = optax.linear_schedule(0.1, 0.0, transition_steps=20)
    model, kernel, bias = linear_model()
    model.compile(optimizer=nj.optimizers.SGD(schedule), loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)  # 4 steps per epoch
    expected = [float(np.float32(schedule(4 * (e + 1) - 1))) for e in range(3)]
    assert history.history["learning_rate"] == pytest.approx(expected, rel=1e-6)
    # A constant rate is not logged (as in Keras without a rate callback).
    plain = nj.Sequential([nj.layers.Dense(2, input_shape=(3,))])
    plain.compile(optimizer="sgd", loss="mse")
    assert "learning_rate" not in plain.fit(x, y, epochs=1, verbose=0).history


def test_schedule_drives_the_updates():
    """Full-batch SGD with a Keras schedule: the weights follow w -= schedule(t) * grad, computed by hand."""
    x, y = regression_data()
    schedule = schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    model, kernel, bias = linear_model()
    model.compile(optimizer=nj.optimizers.SGD(schedule), loss="mse")
    set_linear(model, kernel, bias)
    model.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    k, b = kernel.astype(np.float64), bias.astype(np.float64)
    for t in range(3):
        gk, gb = mse_grads(k, b, x, y)
        k, b = k - 0.1 * 0.5**t * gk, b - 0.1 * 0.5**t * gb
    got_k, got_b = get_linear(model)
    np.testing.assert_allclose(got_k, k, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- clipping, accumulation, decay
@pytest.mark.parametrize("clip", ["clipnorm", "global_clipnorm", "clipvalue"])
def test_clipping_matches_hand_computation(clip):
    x, y = regression_data()
    limit = 0.05
    model, kernel, bias = linear_model()
    model.compile(optimizer=nj.optimizers.SGD(0.1, **{clip: limit}), loss="mse")
    set_linear(model, kernel, bias)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    gk, gb = mse_grads(kernel.astype(np.float64), bias.astype(np.float64), x, y)
    if clip == "clipnorm":  # each tensor on its own (Keras)
        gk = gk * min(1.0, limit / np.linalg.norm(gk))
        gb = gb * min(1.0, limit / np.linalg.norm(gb))
    elif clip == "global_clipnorm":
        norm = math.sqrt(np.sum(gk**2) + np.sum(gb**2))
        gk, gb = gk * min(1.0, limit / norm), gb * min(1.0, limit / norm)
    else:
        gk, gb = np.clip(gk, -limit, limit), np.clip(gb, -limit, limit)
    assert np.linalg.norm(mse_grads(kernel, bias, x, y)[0]) > limit  # the clip is active
    got_k, got_b = get_linear(model)
    np.testing.assert_allclose(got_k, kernel - 0.1 * gk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, bias - 0.1 * gb, rtol=1e-5, atol=1e-6)


def test_only_one_clipping_argument():
    with pytest.raises(ValueError, match="only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        nj.optimizers.SGD(0.1, clipnorm=1.0, global_clipnorm=1.0)


def test_gradient_accumulation_with_global_clipnorm_matches_hand_computation():
    """Two micro-batches: nothing moves after the first; after the second, one step with the clipped mean gradient."""
    x, y = regression_data(n=8)
    limit = 0.05
    model, kernel, bias = linear_model()
    model.compile(optimizer=nj.optimizers.SGD(0.1, global_clipnorm=limit, gradient_accumulation_steps=2), loss="mse")
    set_linear(model, kernel, bias)
    model.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(get_linear(model)[0], kernel)  # a micro-step applies nothing
    model.fit(x[4:], y[4:], batch_size=4, epochs=1, shuffle=False, verbose=0)
    k0, b0 = kernel.astype(np.float64), bias.astype(np.float64)
    g1, g2 = mse_grads(k0, b0, x[:4], y[:4]), mse_grads(k0, b0, x[4:], y[4:])
    gk, gb = (g1[0] + g2[0]) / 2, (g1[1] + g2[1]) / 2
    norm = math.sqrt(np.sum(gk**2) + np.sum(gb**2))
    scale = min(1.0, limit / norm)
    assert scale < 1.0
    got_k, got_b = get_linear(model)
    np.testing.assert_allclose(got_k, k0 - 0.1 * scale * gk, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, b0 - 0.1 * scale * gb, rtol=1e-5, atol=1e-6)


def test_sgd_momentum_weight_decay_matches_keras_formula():
    """Keras: p -= lr * wd * p; m = momentum * m - lr * g; p += m (two full-batch steps)."""
    x, y = regression_data()
    lr, wd, momentum = 0.1, 0.2, 0.9
    model, kernel, bias = linear_model()
    model.compile(optimizer=nj.optimizers.SGD(lr, momentum=momentum, weight_decay=wd), loss="mse")
    set_linear(model, kernel, bias)
    model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    params = [kernel.astype(np.float64), bias.astype(np.float64)]
    velocity = [np.zeros_like(p) for p in params]
    for _ in range(2):
        grads = mse_grads(params[0], params[1], x, y)
        for i in range(2):
            params[i] = params[i] - lr * wd * params[i]
            velocity[i] = momentum * velocity[i] - lr * grads[i]
            params[i] = params[i] + velocity[i]
    got_k, got_b = get_linear(model)
    np.testing.assert_allclose(got_k, params[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, params[1], rtol=1e-5, atol=1e-6)


def test_adam_weight_decay_is_decoupled():
    """Adam(weight_decay) is AdamW: p -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * p), by hand for two steps."""
    x, y = regression_data()
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-7
    model, kernel, bias = linear_model()
    model.compile(optimizer=nj.optimizers.Adam(lr, weight_decay=wd), loss="mse")
    set_linear(model, kernel, bias)
    model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    params = [kernel.astype(np.float64), bias.astype(np.float64)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in (1, 2):
        grads = mse_grads(params[0], params[1], x, y)
        for i in range(2):
            m[i] = b1 * m[i] + (1 - b1) * grads[i]
            v[i] = b2 * v[i] + (1 - b2) * grads[i] ** 2
            m_hat, v_hat = m[i] / (1 - b1**t), v[i] / (1 - b2**t)
            params[i] = params[i] - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * params[i])
    got_k, got_b = get_linear(model)
    np.testing.assert_allclose(got_k, params[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, params[1], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- mixed precision
def digits_mlp():
    return nj.Sequential([
        nj.layers.Flatten(input_shape=(8, 8)),
        nj.layers.Dense(64, activation="relu"),
        nj.layers.Dense(10, activation="softmax"),
    ])


def test_mixed_precision_matches_fp32_accuracy_on_digits(digits):
    (x, y), (x_test, y_test) = digits
    accuracy = {}
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        nj.utils.set_random_seed(0)
        model = digits_mlp()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], dtype_policy=policy, seed=0)
        history = model.fit(x, y, epochs=12, verbose=0)
        state = model.state
        assert {a.dtype for a in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}, policy
        assert {a.dtype for a in jax.tree.leaves(state.opt_state) if jnp.issubdtype(a.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
        assert all(np.isfinite(history.history["loss"]))
        accuracy[policy] = np.mean(model.predict(x_test).argmax(-1) == y_test)
    assert accuracy["float32"] > 0.9, accuracy
    assert abs(accuracy["mixed_bfloat16"] - accuracy["float32"]) <= 0.01, accuracy
    assert abs(accuracy["mixed_float16"] - accuracy["float32"]) <= 0.01, accuracy


def test_mixed_bfloat16_computes_in_bfloat16():
    model = nj.Sequential([nj.layers.Dense(3, input_shape=(4,))])
    model.compile(optimizer="sgd", loss="mse", dtype_policy="mixed_bfloat16")
    state = model.state
    jaxpr = jax.make_jaxpr(lambda s, x: nj.train.apply_model(s, s.params, x, training=False)[0])(state, jnp.ones((2, 4)))
    dot_dtypes = {eqn.outvars[0].aval.dtype for eqn in jaxpr.eqns if eqn.primitive.name == "dot_general"}
    assert dot_dtypes == {jnp.dtype(jnp.bfloat16)}
    assert jaxpr.out_avals[0].dtype == jnp.float32  # outputs come back in float32 for the loss


def test_loss_scaling_rescues_float16_gradients_that_underflow():
    """A loss of 1e-7 * mean(outputs): its float16 gradients underflow to zero unless the loss is scaled."""
    x = np.ones((32, 4), np.float32)

    def tiny_loss(outputs, batch):
        return 1e-7 * jnp.mean(outputs)

    def step(tx):
        model = nj.Sequential([nj.layers.Dense(1, input_shape=(4,), use_bias=False)])
        state = nj.train.TrainState.create(model.module, tx, loss_fn=tiny_loss, compute_dtype=jnp.float16, key=0)
        new_state, metrics = jax.jit(nj.train.train_step)(state, (x,))
        return state, new_state, metrics

    state, unscaled, _ = step(optax.sgd(1e7))
    assert jax.tree.leaves(unscaled.params)[0].tolist() == jax.tree.leaves(state.params)[0].tolist()  # nothing learned
    state, scaled, metrics = step(precision.dynamic_loss_scale(optax.sgd(1e7)))
    # d loss / d kernel = 1e-7 * mean over the batch of x = 1e-7 per weight; one SGD step of 1e7 moves each weight by -1.
    np.testing.assert_allclose(jax.tree.leaves(scaled.params)[0] - jax.tree.leaves(state.params)[0], -1.0, rtol=1e-3)
    assert float(metrics["loss"]) == pytest.approx(1e-7 * float(jnp.mean(np.ones(4) @ jax.tree.leaves(state.params)[0])), rel=1e-2)
    assert float(precision.loss_scale(scaled.opt_state)) == 2.0**15


def test_dynamic_loss_scale_skips_overflow_and_adapts():
    tx = precision.dynamic_loss_scale(optax.sgd(1.0), initial_scale=8.0, period=2)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.full(3, 8.0)}, state, params)  # scaled gradient 8 = true gradient 1
    np.testing.assert_array_equal(updates["w"], -1.0)
    updates, state = tx.update({"w": jnp.full(3, 16.0)}, state, params)
    assert float(state.scale) == 16.0  # two finite steps: doubled
    updates, state = tx.update({"w": jnp.array([1.0, jnp.inf, 0.0])}, state, params)
    np.testing.assert_array_equal(updates["w"], 0.0)
    assert float(state.scale) == 8.0 and int(state.good_steps) == 0


# ---------------------------------------------------------------------------------------------- non-finite policy
def poisoned_data(n=32, bad_batch=2, batch_size=4):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = rng.normal(size=(n, 2)).astype(np.float32)
    x[bad_batch * batch_size] = np.nan
    return x, y


def test_nonfinite_skip_keeps_state_bitwise_and_counts():
    model, kernel, bias = linear_model()
    state = nj.train.TrainState.create(model.module, optax.adam(0.1), loss="mse", nonfinite="skip", key=0)
    step = jax.jit(nj.train.train_step)
    x, y = poisoned_data()
    state, _ = step(state, (x[:4], y[:4]))
    before = jax.device_get(state)
    state, metrics = step(state, (x[8:12], y[8:12]))  # holds the NaN row
    assert not np.isfinite(float(metrics["loss"]))
    after = jax.device_get(state)
    for a, b in zip(jax.tree.leaves((before.params, before.model_state, before.opt_state.inner)),
                    jax.tree.leaves((after.params, after.model_state, after.opt_state.inner)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(after.step) == int(before.step) + 1
    assert nonfinite.skipped_steps(state.opt_state) == 1 and nonfinite.halt_error(state) is None
    state, _ = step(state, (x[12:16], y[12:16]))
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(state.params))


def test_fit_skip_policy_trains_through_a_poisoned_batch():
    x, y = poisoned_data()
    model, _, _ = linear_model()
    model.compile(optimizer="sgd", loss="mse", nonfinite="skip", steps_per_execution=3)
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert history.history["skipped_steps"] == [1, 2]
    assert all(np.isfinite(history.history["loss"]))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # The epoch's loss is the mean over the finite batches only: check it by evaluating nothing else.
    assert history.history["loss"][0] > 0


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_fit_halt_policy_names_step_and_path_and_keeps_prior_weights(steps_per_execution):
    x, y = poisoned_data(bad_batch=5)
    model, kernel, bias = linear_model()
    model.compile(optimizer="sgd", loss="mse", nonfinite="halt", steps_per_execution=steps_per_execution)
    set_linear(model, kernel, bias)
    with pytest.raises(nonfinite.NonFiniteError, match=r"step 5 has loss nan; first non-finite gradient or parameter: layers/0/bias") as info:
        model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    assert info.value.step == 5 and info.value.path == "layers/0/bias"
    # The weights are those after the five clean batches, by hand.
    k, b = kernel.astype(np.float64), bias.astype(np.float64)
    for i in range(5):
        gk, gb = mse_grads(k, b, x[4 * i:4 * i + 4], y[4 * i:4 * i + 4])
        k, b = k - 0.01 * gk, b - 0.01 * gb
    got_k, got_b = get_linear(model)
    np.testing.assert_allclose(got_k, k, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_b, b, rtol=1e-5, atol=1e-6)
    assert int(model.state.step) == 5


def test_skip_policy_halts_after_too_many_in_a_row():
    x, y = poisoned_data()
    x[8:24] = np.nan  # batches 2..5: four non-finite steps in a row
    model, _, _ = linear_model()
    model.compile(optimizer="sgd", loss="mse", nonfinite=nonfinite.NonFinitePolicy("skip", max_consecutive=3))
    with pytest.raises(nonfinite.NonFiniteError, match="4 non-finite steps in a row") as info:
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert info.value.step == 5
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_nonfinite_policy_errors():
    with pytest.raises(ValueError, match="expected None, 'halt', 'skip'"):
        nj.Sequential([nj.layers.Dense(1, input_shape=(2,))]).compile(optimizer="sgd", loss="mse", nonfinite="ignore")


# ---------------------------------------------------------------------------------------------- EMA
def test_ema_of_weights_matches_hand_computation():
    """ema_1 = p_1, ema_t = m * ema_{t-1} + (1 - m) * p_t, over the parameters after each update."""
    model, kernel, bias = linear_model()
    state = nj.train.TrainState.create(model.module, ema.with_ema(optax.sgd(0.1), momentum=0.9), loss="mse", key=0)
    x, y = regression_data()
    step = jax.jit(nj.train.train_step)
    expected = None
    for t in range(4):
        state, _ = step(state, (x, y))
        params = [np.asarray(a, np.float64) for a in jax.tree.leaves(state.params)]
        expected = params if t == 0 else [0.9 * e + 0.1 * p for e, p in zip(expected, params, strict=True)]
    for got, want in zip(jax.tree.leaves(ema.ema_params(state.opt_state)), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    swapped = ema.swap(state)
    for got, want in zip(jax.tree.leaves(swapped.params), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_fit_with_use_ema_ends_on_ema_weights_and_swap_evaluates_with_them():
    x, y = regression_data(n=64)
    model, _, _ = linear_model()
    model.compile(optimizer=nj.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.8), loss="mse", seed=0)
    history = model.fit(x[:48], y[:48], batch_size=8, epochs=3, validation_data=(x[48:], y[48:]), verbose=0,
                        callbacks=[nj.callbacks.SwapEMAWeights()])
    final = [np.asarray(a) for a in jax.tree.leaves(ema.ema_params(model.state.opt_state))]
    for got, want in zip(jax.tree.leaves(model.state.params), final, strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    # The last validation ran on the EMA weights, which are now the model's: same numbers.
    kernel, bias = get_linear(model)
    val_loss = np.mean((x[48:] @ kernel + bias - y[48:]) ** 2)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-5)


# ---------------------------------------------------------------------------------------------- steps_per_execution
def test_steps_per_execution_gives_the_same_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6)).astype(np.float32)  # 100 = 6 * 16 + 4: a partial last batch
    y = rng.integers(0, 3, 100).astype(np.int32)
    results = {}
    for k in (1, 4):
        nj.utils.set_random_seed(0)  # the same initial weights
        model = nj.Sequential([nj.layers.Dense(16, input_shape=(6,), activation="relu"), nj.layers.Dropout(0.2),
                               nj.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", steps_per_execution=k, seed=3)
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
        results[k] = (model.get_weights(), history.history["loss"])
    for a, b in zip(results[1][0], results[4][0], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results[1][1], results[4][1], rtol=1e-6)


# ---------------------------------------------------------------------------------------------- summary FLOPs
def test_summary_flops_match_hand_count():
    model = nj.Sequential([nj.layers.Flatten(input_shape=(28, 28)), nj.layers.Dense(128), nj.layers.Dense(10)])
    # A Dense layer costs 2 * inputs * units (multiply and add) plus units bias additions per example.
    hand = (2 * 784 * 128 + 128) + (2 * 128 * 10 + 10)
    printed = []
    assert model.summary(print_fn=printed.append, flops=True) is None
    text = "\n".join(printed)
    assert f"FLOPs per example (forward): {hand:,}" in text
    no_bias = nj.Sequential([nj.layers.Dense(16, input_shape=(8,), use_bias=False)])
    assert nj.viz.flops_per_example(no_bias) == 2 * 8 * 16


def test_unused_controls_add_nothing_to_the_compiled_step():
    """No policy, no loss scaling: the step's program has no finiteness checks and no extra selects."""
    model, _, _ = linear_model()
    x, y = regression_data()
    plain = nj.train.TrainState.create(model.module, "sgd", loss="mse", key=0)
    guarded = nj.train.TrainState.create(model.module, "sgd", loss="mse", key=0, nonfinite="skip")
    plain_program = str(jax.make_jaxpr(nj.train.train_step)(plain, (x, y)))  # the text includes nested jaxprs
    guarded_program = str(jax.make_jaxpr(nj.train.train_step)(guarded, (x, y)))
    assert "is_finite" not in plain_program and "is_finite" in guarded_program
    assert plain_program.count("select_n") < guarded_program.count("select_n")  # optax's own step counter has one
