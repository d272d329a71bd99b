"""Masks against Keras 3: `Embedding(mask_zero=True)` and `Masking` through RNNs, pooling, attention,
merges, normalisation, and into the loss and metrics of `fit`/`evaluate`.

Each model is built in Keras and in nnjax with the same layers; Keras's weights are copied in by
name and the outputs (and the reported loss and metrics) compared at float32 tolerance.
"""

import warnings

import jax.numpy as jnp
import keras
import numpy as np
import pytest

import nnjax as nj

L = nj.layers
RNG = np.random.default_rng(0)
VOCAB, STEPS = 20, 7


def padded_ids(batch=6):
    """Ids with trailing padding (0) of several lengths, one row fully padded but its first step."""
    ids = RNG.integers(1, VOCAB, size=(batch, STEPS)).astype(np.int32)
    for row, length in enumerate([7, 4, 2, 5, 1, 6][:batch]):
        ids[row, length:] = 0
    return ids


def keras_layers(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def nnjax_layers(model):
    return [layer for layer in model.module.layers if not isinstance(layer, L.InputLayer)]


def copy_weights(klayer, layer):
    """Keras's weights into the nnjax layer, matched by their short names (kernel, bias, embeddings, ...)."""
    if isinstance(klayer, keras.layers.Bidirectional):
        copy_weights(klayer.forward_layer, layer.forward_layer)
        copy_weights(klayer.backward_layer, layer.backward_layer)
        return
    owner = layer.cell if hasattr(layer, "cell") else layer
    for variable in klayer.weights:
        name = variable.name
        if isinstance(klayer, keras.layers.MultiHeadAttention):
            part = variable.path.split("/")[-2]  # query, key, value, attention_output
            name = {"attention_output": "output"}.get(part, part) + "_" + variable.name
        target = getattr(owner, name)
        value = np.asarray(variable.value)
        assert tuple(target[...].shape) == value.shape, f"{klayer.name}/{name}: {target[...].shape} vs {value.shape}"
        target[...] = jnp.asarray(value)


def twin(keras_stack, nnjax_stack, input_shape=(STEPS,), dtype="int32"):
    """The same stack in Keras and nnjax (Sequential), with Keras's weights copied in."""
    kmodel = keras.Sequential([keras.Input(input_shape, dtype=dtype)] + keras_stack)
    model = nj.Sequential(nnjax_stack)
    model.build((None,) + tuple(input_shape), jnp.int32 if dtype == "int32" else jnp.float32)
    for klayer, layer in zip(keras_layers(kmodel), nnjax_layers(model), strict=True):
        copy_weights(klayer, layer)
    return kmodel, model


RNN_CASES = [
    ("SimpleRNN", {"return_sequences": True, "go_backwards": True}),
    ("LSTM", {}),
    ("LSTM", {"return_sequences": True}),
    ("LSTM", {"go_backwards": True}),
    ("LSTM", {"return_sequences": True, "zero_output_for_mask": True}),
    ("GRU", {}),
    ("GRU", {"return_sequences": True, "reset_after": False}),
]


@pytest.mark.parametrize(("kind", "kwargs"), RNN_CASES, ids=lambda v: v if isinstance(v, str) else "-".join(v) or "last")
def test_recurrent_layers_skip_masked_steps_as_keras(kind, kwargs):
    ids = padded_ids()
    kmodel, model = twin([keras.layers.Embedding(VOCAB, 5, mask_zero=True), getattr(keras.layers, kind)(4, **kwargs)],
                         [L.Embedding(VOCAB, 5, mask_zero=True), getattr(L, kind)(4, **kwargs)])
    expected = np.asarray(kmodel(ids))
    np.testing.assert_allclose(model.predict(ids, verbose=0), expected, rtol=1e-5, atol=1e-6)
    if kwargs:
        return
    # Without the mask the outputs differ: the test sees the mask at work.
    plain = nj.Sequential([L.Embedding(VOCAB, 5), getattr(L, kind)(4, **kwargs)])
    plain.build((None, STEPS), jnp.int32)
    plain.set_weights(model.get_weights())
    assert not np.allclose(plain.predict(ids, verbose=0), expected, atol=1e-4)


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_with_mask_matches_keras(merge_mode, return_sequences):
    ids = padded_ids()
    kmodel, model = twin(
        [keras.layers.Embedding(VOCAB, 5, mask_zero=True),
         keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=return_sequences), merge_mode=merge_mode)],
        [L.Embedding(VOCAB, 5, mask_zero=True), L.Bidirectional(L.LSTM(3, return_sequences=return_sequences), merge_mode=merge_mode)],
    )
    np.testing.assert_allclose(model.predict(ids, verbose=0), np.asarray(kmodel(ids)), rtol=1e-5, atol=1e-6)


def test_pooling_dense_and_stacked_rnns_carry_the_mask_as_keras():
    ids = padded_ids()
    kmodel, model = twin(
        [keras.layers.Embedding(VOCAB, 6, mask_zero=True), keras.layers.Dense(5, activation="relu"), keras.layers.Dropout(0.3),
         keras.layers.LayerNormalization(), keras.layers.GRU(4, return_sequences=True), keras.layers.GlobalAveragePooling1D(),
         keras.layers.Dense(3)],
        [L.Embedding(VOCAB, 6, mask_zero=True), L.Dense(5, activation="relu"), L.Dropout(0.3), L.LayerNormalization(),
         L.GRU(4, return_sequences=True), L.GlobalAveragePooling1D(), L.Dense(3)],
    )
    np.testing.assert_allclose(model.predict(ids, verbose=0), np.asarray(kmodel(ids)), rtol=1e-5, atol=1e-6)


def test_masking_layer_matches_keras():
    x = RNG.normal(size=(4, 5, 3)).astype(np.float32)
    x[0, 3:] = 0.0
    x[2, 1:] = 0.0
    x[3, 2] = 0.0  # a masked step in the middle
    kmodel, model = twin([keras.layers.Masking(), keras.layers.LSTM(4, return_sequences=True)],
                         [L.Masking(), L.LSTM(4, return_sequences=True)], input_shape=(5, 3), dtype="float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), np.asarray(kmodel(x)), rtol=1e-5, atol=1e-6)


def test_attention_takes_the_masks_of_its_inputs_as_keras():
    ids = padded_ids()
    inputs = keras.Input((STEPS,), dtype="int32")
    embedded = keras.layers.Embedding(VOCAB, 8, mask_zero=True)(inputs)
    attended = keras.layers.MultiHeadAttention(2, 4)(embedded, embedded)
    kmodel = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(attended))

    nj_inputs = nj.Input((STEPS,), dtype="int32")
    embedding, mha = L.Embedding(VOCAB, 8, mask_zero=True), L.MultiHeadAttention(2, 4)
    nj_embedded = embedding(nj_inputs)
    model = nj.Model(nj_inputs, L.GlobalAveragePooling1D()(mha(nj_embedded, nj_embedded)))
    copy_weights(kmodel.layers[1], embedding)
    copy_weights(kmodel.layers[2], mha)
    np.testing.assert_allclose(model.predict(ids, verbose=0), np.asarray(kmodel(ids)), rtol=1e-5, atol=1e-6)


def test_merge_masks_follow_keras():
    ids = padded_ids()
    other = padded_ids()[::-1].copy()
    ka, kb = keras.Input((STEPS,), dtype="int32"), keras.Input((STEPS,), dtype="int32")
    kemb_a, kemb_b = keras.layers.Embedding(VOCAB, 4, mask_zero=True), keras.layers.Embedding(VOCAB, 4, mask_zero=True)
    kmerged = [keras.layers.Add()([kemb_a(ka), kemb_b(kb)]), keras.layers.Concatenate()([kemb_a(ka), kemb_b(kb)])]
    kmodel = keras.Model([ka, kb], [keras.layers.GlobalAveragePooling1D()(m) for m in kmerged])

    na, nb = nj.Input((STEPS,), dtype="int32"), nj.Input((STEPS,), dtype="int32")
    emb_a, emb_b = L.Embedding(VOCAB, 4, mask_zero=True), L.Embedding(VOCAB, 4, mask_zero=True)
    merged = [L.Add()([emb_a(na), emb_b(nb)]), L.Concatenate()([emb_a(na), emb_b(nb)])]
    model = nj.Model([na, nb], [L.GlobalAveragePooling1D()(m) for m in merged])
    copy_weights(kemb_a, emb_a)
    copy_weights(kemb_b, emb_b)
    for got, expected in zip(model.predict([ids, other], verbose=0), kmodel([ids, other]), strict=True):
        np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)


def test_batch_normalization_statistics_skip_masked_steps_as_keras():
    ids = padded_ids()
    kbn, bn = keras.layers.BatchNormalization(momentum=0.5), L.BatchNormalization(momentum=0.5)
    kmodel, model = twin([keras.layers.Embedding(VOCAB, 3, mask_zero=True), kbn], [L.Embedding(VOCAB, 3, mask_zero=True), bn])
    kout = kmodel(ids, training=True)
    out = model.module(jnp.asarray(ids), training=True)
    np.testing.assert_allclose(np.asarray(out), np.asarray(kout), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_mean[...]), np.asarray(kbn.moving_mean.value), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn.moving_variance[...]), np.asarray(kbn.moving_variance.value), rtol=1e-5, atol=1e-6)


def test_sequence_loss_and_metrics_leave_masked_steps_out_as_keras():
    # A tagger: one label per step; padded steps carry label 0 and must not count, in the loss or in
    # evaluate's metrics (Keras masks y_pred's mask into both).
    ids = padded_ids(6)
    labels = RNG.integers(0, 3, size=ids.shape).astype(np.int32)
    stack = lambda mod: [mod.Embedding(VOCAB, 5, mask_zero=True), mod.LSTM(4, return_sequences=True),  # noqa: E731
                         mod.Dense(3, activation="softmax")]
    kmodel, model = twin(stack(keras.layers), stack(L))
    kmodel.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.compile(optimizer=nj.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    expected = kmodel.evaluate(ids, labels, batch_size=6, verbose=0, return_dict=True)
    got = model.evaluate(ids, labels, batch_size=6, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-5)
    # The mask changes the numbers (padded steps would otherwise count).
    mask = ids != 0
    probs = model.predict(ids, verbose=0)
    unmasked = -np.mean(np.log(np.take_along_axis(probs, labels[..., None], -1)))
    assert abs(unmasked - got["loss"]) > 1e-4
    # One training step: the same loss and the same updated weights as Keras.
    khist = kmodel.fit(ids, labels, batch_size=6, epochs=1, shuffle=False, verbose=0)
    hist = model.fit(ids, labels, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert hist.history["loss"][0] == pytest.approx(khist.history["loss"][0], rel=1e-5)
    assert hist.history["accuracy"][0] == pytest.approx(khist.history["accuracy"][0], rel=1e-5)
    # Keras 3 on JAX: fit's training metrics do not see the mask (it does not survive jax.grad), evaluate's do.
    hits = np.argmax(probs, -1) == labels
    assert hist.history["accuracy"][0] == pytest.approx(hits.mean(), rel=1e-6)
    assert got["accuracy"] == pytest.approx(hits[mask].mean(), rel=1e-6)
    for klayer, layer in zip(keras_layers(kmodel), nnjax_layers(model), strict=True):
        owner = layer.cell if hasattr(layer, "cell") else layer
        for variable in klayer.weights:
            np.testing.assert_allclose(np.asarray(getattr(owner, variable.name)[...]), np.asarray(variable.value),
                                       rtol=1e-5, atol=1e-6)
    assert mask.sum() < mask.size


def test_a_layer_without_mask_support_drops_the_mask_with_keras_warning():
    with pytest.warns(UserWarning, match=r"Layer 'conv1d\w*' \(of type Conv1D\) was passed an input with a mask attached to it. "
                      r"However, this layer does not support masking and will therefore destroy the mask information"):
        model = nj.Sequential([L.Embedding(VOCAB, 4, mask_zero=True), L.Conv1D(3, 2), L.LSTM(2)])
        model.build((None, STEPS), jnp.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain_lstm = model.predict(padded_ids(), verbose=0)
    assert plain_lstm.shape == (6, 2)


def test_mask_shape_errors_name_the_shapes():
    lstm = L.LSTM(2)
    x = jnp.zeros((3, 5, 4))
    with pytest.raises(ValueError, match=r"`mask` must have the shape of the input's first 2 axes, \(3, 5\); received mask of shape \(3, 4\)"):
        lstm(x, mask=jnp.ones((3, 4), bool))


def test_embedding_mask_zero_in_config_and_explicit_mask_argument():
    layer = L.Embedding(VOCAB, 3, mask_zero=True)
    assert layer.get_config()["mask_zero"] is True
    ids = jnp.asarray(padded_ids())
    out = layer(ids)
    np.testing.assert_array_equal(np.asarray(nj.layers.masking.get_mask(out)), np.asarray(ids) != 0)
    # An explicit mask wins over the carried one (Keras's `mask=` argument).
    lstm = L.LSTM(2)
    explicit = lstm(out, mask=jnp.ones(ids.shape, bool))
    carried = lstm(out)
    assert not np.allclose(np.asarray(explicit), np.asarray(carried))


def test_a_flax_module_after_a_mask_gets_the_warning_too():
    from flax import nnx

    class Mean(nnx.Module):
        def __call__(self, x):
            return x.mean(axis=1)

    with pytest.warns(UserWarning, match=r"The Flax module Mean was passed an input with a mask attached to it"):
        model = nj.Sequential([L.Embedding(VOCAB, 4, mask_zero=True), Mean()])
        model.build((None, STEPS), jnp.int32)
