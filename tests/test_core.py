"""The functional core: TrainState and pure steps under jit, vmap and grad."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import nnjax as nj
from nnjax import train


def small_module(seed=0, hidden=16, dropout=0.0):
    layers = [nj.layers.Flatten(), nj.layers.Dense(hidden, activation="tanh")]
    if dropout:
        layers.append(nj.layers.Dropout(dropout))
    layers.append(nj.layers.Dense(10, activation="softmax"))
    module = nj.layers.SequentialModule(layers)
    module.ensure_built((1, 8, 8), key=jax.random.PRNGKey(seed))
    return module


def batch_of(digits, n=64, start=0):
    (x, y), _ = digits
    return x[start:start + n], y[start:start + n]


def test_train_step_jit_equals_eager(digits):
    state = train.TrainState.create(small_module(dropout=0.2), "adam", loss="sparse_categorical_crossentropy",
                                    metrics=["accuracy"], key=1)
    batch = batch_of(digits)
    eager_state, eager_metrics = train.train_step(state, batch)
    jit_state, jit_metrics = jax.jit(train.train_step)(state, batch)
    for a, b in zip(jax.tree.leaves(eager_state), jax.tree.leaves(jit_state)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eager_metrics["loss"], jit_metrics["loss"], rtol=1e-6)
    assert int(jit_state.step) == 1


def test_train_step_loss_matches_numpy(digits):
    """The reported loss is the NumPy cross-entropy of the model's own forward pass."""
    state = train.TrainState.create(small_module(), "sgd", loss="sparse_categorical_crossentropy", key=0)
    x, y = batch_of(digits, 32)
    probs = np.asarray(train.predict_step(state, x), np.float64)
    expected = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1 - 1e-7)))
    _, metrics = jax.jit(train.train_step)(state, (x, y))
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5)


def test_sgd_update_matches_hand_computation(digits):
    """params_new = params - lr * grad, with the gradient taken independently by jax.grad of a NumPy-free loss."""
    state = train.TrainState.create(small_module(), optax.sgd(0.1), loss="sparse_categorical_crossentropy", key=0)
    x, y = batch_of(digits, 16)

    def loss_of(params):
        probs = train.apply_model(state, params, x, training=True)[0]
        return -jnp.mean(jnp.log(jnp.clip(probs[jnp.arange(len(y)), y], 1e-7, 1 - 1e-7)))

    grads = jax.grad(loss_of)(state.params)
    new_state, _ = train.train_step(state, (x, y))
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
    for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_gradients_match_finite_differences(digits):
    jax.config.update("jax_enable_x64", True)
    try:
        module = nj.layers.SequentialModule([nj.layers.Dense(5, activation="tanh", dtype=jnp.float64), nj.layers.Dense(3, dtype=jnp.float64)])
        module.ensure_built((1, 4), key=jax.random.PRNGKey(0))
        state = train.TrainState.create(module, "sgd", loss=nj.losses.SparseCategoricalCrossentropy(from_logits=True), key=0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(6, 4))
        y = rng.integers(0, 3, size=6)

        def loss_of(params):
            return train.compute_loss(state, params, (x, y), training=True)[0]

        check_grads(loss_of, (state.params,), order=2, modes=("rev",), atol=1e-4, rtol=1e-4)
    finally:
        jax.config.update("jax_enable_x64", False)


def test_vmap_over_stacked_states_trains_independent_models(digits):
    seeds = [0, 1, 2]
    states = [train.TrainState.create(small_module(seed=s), "adam", loss="sparse_categorical_crossentropy", key=s) for s in seeds]
    stacked = train.stack_states(states)
    batches = [batch_of(digits, 32, start=32 * i) for i in range(5)]
    vmapped = jax.jit(jax.vmap(train.train_step, in_axes=(0, None)))
    single = jax.jit(train.train_step)
    for batch in batches:
        stacked, _ = vmapped(stacked, batch)
        states = [single(s, batch)[0] for s in states]
    for i, state in enumerate(states):
        member = train.unstack_state(stacked, i)
        for a, b in zip(jax.tree.leaves(member.params), jax.tree.leaves(state.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # the members really differ (independent initialisations)
    assert not np.allclose(jax.tree.leaves(stacked.params)[0][0], jax.tree.leaves(stacked.params)[0][1])


def test_dropout_key_depends_on_step_and_is_reproducible(digits):
    module = small_module(dropout=0.5)
    state = train.TrainState.create(module, "sgd", loss="sparse_categorical_crossentropy", key=3)
    x, _ = batch_of(digits, 8)
    out_a = train.apply_model(state, state.params, x, training=True, key=train.step_key(state))[0]
    out_b = train.apply_model(state, state.params, x, training=True, key=train.step_key(state))[0]
    later = state.replace(step=state.step + 1)
    out_c = train.apply_model(later, later.params, x, training=True, key=train.step_key(later))[0]
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.allclose(out_a, out_c)
    inference = train.predict_step(state, x)
    np.testing.assert_array_equal(inference, train.predict_step(state, x))


def test_custom_loss_fn_reports_aux(digits):
    def loss_fn(outputs, batch):
        x, y = batch
        ce = nj.losses.sparse_categorical_crossentropy(y, outputs)
        return jnp.mean(ce), {"mean_confidence": jnp.mean(jnp.max(outputs, axis=-1))}

    state = train.TrainState.create(small_module(), "adam", loss_fn=loss_fn, key=0)
    _, metrics = jax.jit(train.train_step)(state, batch_of(digits))
    assert set(metrics) == {"loss", "mean_confidence"}
    assert 0.0 < float(metrics["mean_confidence"]) <= 1.0


def test_create_requires_a_loss():
    with pytest.raises(ValueError, match="pass `loss`"):
        train.TrainState.create(small_module(), "adam")
