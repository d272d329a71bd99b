"""The Keras namespace: the `keras.X.Y` names that Keras programs commonly use exist as `nj.X.Y` and compute
what Keras 3 computes (Keras 3, JAX backend, is the oracle; float32, atol 1e-6 unless a comment says why)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

# Public Keras API names (a list of names only, no code) that typical Keras programs reach for: convnet
# classifiers, functional models and merges, VAEs, custom training steps in JAX, transformer text
# classifiers, timeseries models and custom layers.
NAMESPACE = [
    "Input", "Model", "Sequential", "layers.Input", "layers.Layer", "layers.Dense", "layers.add", "layers.concatenate",
    "layers.average", "layers.multiply", "layers.subtract", "layers.maximum", "layers.minimum", "layers.dot",
    "KerasTensor", "models.Model", "models.Sequential", "ops", "random", "utils", "models", "activations", "losses", "metrics", "optimizers", "callbacks", "initializers",
    "utils.set_random_seed", "utils.to_categorical", "utils.normalize", "utils.pad_sequences", "utils.plot_model",
    "random.normal", "random.uniform", "random.randint", "random.dropout", "random.shuffle", "random.categorical",
    "random.truncated_normal", "random.SeedGenerator",
    "activations.relu", "activations.softmax", "activations.sigmoid", "activations.tanh", "activations.gelu",
    "activations.silu", "activations.leaky_relu",
]


@pytest.mark.parametrize("name", NAMESPACE)
def test_keras_names_exist(name):
    ours, theirs = nj, keras
    for part in name.split("."):
        ours, theirs = getattr(ours, part), getattr(theirs, part)
    assert callable(ours) == callable(theirs)


def test_input_is_one_function_and_activations_are_functions():
    assert nj.layers.Input is nj.Input
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    for name in ("relu", "sigmoid", "tanh", "softmax", "gelu", "silu", "elu", "selu", "softplus", "leaky_relu", "relu6",
                 "hard_sigmoid", "exponential", "log_softmax", "mish", "softsign"):
        np.testing.assert_allclose(getattr(nj.activations, name)(x), getattr(keras.activations, name)(x), atol=1e-6,
                                   err_msg=name)
    np.testing.assert_allclose(nj.activations.relu(x, negative_slope=0.1, max_value=2.0, threshold=0.5),
                               keras.activations.relu(x, negative_slope=0.1, max_value=2.0, threshold=0.5), atol=1e-6)
    # The activation string resolves to Keras's function: leaky_relu's slope is Keras's 0.2.
    np.testing.assert_allclose(nj.activations.get("leaky_relu")(x), keras.activations.get("leaky_relu")(x), atol=1e-6)


R = np.random.default_rng(0)
A = R.normal(size=(3, 4)).astype(np.float32)
B = R.normal(size=(3, 4)).astype(np.float32)
P = np.abs(A) + 0.1
M = R.normal(size=(4, 5)).astype(np.float32)
PROBS = jax.nn.softmax(jnp.asarray(A), axis=-1)
IDS = np.array([0, 3, 1])

# (op name, args, kwargs): each computed by nj.ops and keras.ops and compared.
CASES = [
    ("mean", (A,), {}), ("mean", (A,), {"axis": 1, "keepdims": True}), ("sum", (A,), {"axis": 0}), ("max", (A,), {"axis": -1}),
    ("min", (A,), {}), ("prod", (A,), {"axis": 1}), ("std", (A,), {"axis": 0}), ("var", (A,), {"axis": 1}),
    ("exp", (A,), {}), ("log", (P,), {}), ("sqrt", (P,), {}), ("square", (A,), {}), ("abs", (A,), {}), ("tanh", (A,), {}),
    ("negative", (A,), {}), ("sign", (A,), {}), ("power", (P, 1.5), {}), ("clip", (A, -0.5, 0.5), {}),
    ("add", (A, B), {}), ("subtract", (A, B), {}), ("multiply", (A, B), {}), ("divide", (A, P), {}),
    ("maximum", (A, B), {}), ("minimum", (A, B), {}), ("matmul", (A, M), {}), ("dot", (A, M), {}),
    ("reshape", (A, (4, 3)), {}), ("reshape", (A, (-1,)), {}), ("transpose", (A,), {}), ("expand_dims", (A, 1), {}),
    ("squeeze", (A[:, :1],), {"axis": 1}), ("concatenate", ([A, B],), {"axis": 0}), ("stack", ([A, B],), {"axis": 1}),
    ("where", (A > 0, A, B), {}), ("cast", (A, "int32"), {}), ("convert_to_tensor", (A,), {}),
    ("one_hot", (IDS, 5), {}), ("arange", (6,), {}), ("arange", (1, 7, 2), {}), ("softmax", (A,), {}),
    ("log_softmax", (A,), {"axis": 0}), ("relu", (A,), {}), ("sigmoid", (A,), {}), ("gelu", (A,), {}),
    ("gelu", (A,), {"approximate": False}), ("leaky_relu", (A,), {}), ("silu", (A,), {}), ("elu", (A,), {}),
    ("softplus", (A,), {}), ("logsumexp", (A,), {"axis": 1}), ("argmax", (A,), {"axis": 1}), ("argmin", (A,), {}),
    ("cumsum", (A,), {"axis": 1}), ("tile", (A, (2, 1)), {}), ("repeat", (A, 2), {"axis": 0}),
    ("take", (A, IDS), {"axis": 1}), ("split", (A, 2), {"axis": 1}), ("pad", (A, ((1, 0), (0, 2))), {}),
    ("zeros", ((2, 3),), {}), ("ones", ((2,),), {}), ("zeros_like", (A,), {}), ("ones_like", (A,), {}),
    ("full", ((2, 2), 3.0), {}), ("eye", (3,), {}), ("linspace", (0.0, 1.0, 5), {}), ("tril", (A,), {}),
    ("equal", (A, A), {}), ("greater", (A, B), {}), ("logical_and", (A > 0, B > 0), {}), ("isnan", (A,), {}),
    ("rsqrt", (P,), {}), ("erf", (A,), {}), ("einsum", ("ij,jk->ik", A, M), {}), ("norm", (A,), {"axis": 1}),
    ("moments", (A, [0]), {}), ("top_k", (A, 2), {}), ("unstack", (A,), {"axis": 0}), ("flip", (A,), {"axis": 1}),
    ("sort", (A,), {}), ("argsort", (A,), {}), ("broadcast_to", (A[:1], (3, 4)), {}), ("round", (A * 3,), {}),
    ("floor", (A,), {}), ("ceil", (A,), {}), ("mod", (A, 0.7), {}), ("diag", (A[0],), {}), ("roll", (A, 1), {"axis": 1}),
    ("binary_crossentropy", (np.float32(A > 0), jax.nn.sigmoid(A)), {}),
    ("binary_crossentropy", (np.float32(A > 0), A), {"from_logits": True}),
    ("categorical_crossentropy", (jax.nn.one_hot(IDS, 4), PROBS), {}),
    ("categorical_crossentropy", (jax.nn.one_hot(IDS, 4), A), {"from_logits": True}),
    ("sparse_categorical_crossentropy", (IDS, PROBS), {}),
    ("sparse_categorical_crossentropy", (IDS, A), {"from_logits": True}),
    ("normalize", (A,), {}), ("stop_gradient", (A,), {}), ("slice", (A, (1, 1), (2, 2)), {}),
    ("slice_update", (A, (1, 1), np.ones((2, 2), np.float32)), {}), ("scatter_update", (A, [[0, 1], [2, 3]], [9.0, 8.0]), {}),
    ("segment_sum", (A, np.array([0, 0, 1])), {"num_segments": 2}), ("divide_no_nan", (A, A * (A > 0)), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_ops_compute_what_keras_ops_computes(name, args, kwargs):
    expected = getattr(keras.ops, name)(*args, **kwargs)
    got = getattr(nj.ops, name)(*args, **kwargs)
    expected_leaves, got_leaves = jax.tree.leaves(expected), jax.tree.leaves(got)
    assert len(expected_leaves) == len(got_leaves)
    for e, g in zip(expected_leaves, got_leaves, strict=True):
        e, g = np.asarray(e), np.asarray(g)
        assert g.shape == e.shape and g.dtype == e.dtype, (name, g.shape, e.shape, g.dtype, e.dtype)
        np.testing.assert_allclose(g, e, atol=1e-6, rtol=1e-6)


def test_shape_queries_and_control_flow():
    assert nj.ops.shape(A) == keras.ops.shape(A) == (3, 4)
    assert nj.ops.ndim(A) == 2 and nj.ops.size(A) == 12 and nj.ops.dtype(A) == "float32"
    assert nj.ops.is_tensor(jnp.asarray(A)) and not nj.ops.is_tensor(1.0)
    assert isinstance(nj.ops.convert_to_numpy(jnp.asarray(A)), np.ndarray)
    np.testing.assert_allclose(nj.ops.cond(True, lambda: A, lambda: B), keras.ops.cond(True, lambda: A, lambda: B))
    np.testing.assert_allclose(nj.ops.fori_loop(0, 3, lambda i, v: v * 2, A), keras.ops.fori_loop(0, 3, lambda i, v: v * 2, A))
    got = nj.ops.while_loop(lambda i, v: i < 4, lambda i, v: (i + 1, v + 1.0), (0, A))
    want = keras.ops.while_loop(lambda i, v: i < 4, lambda i, v: (i + 1, v + 1.0), (0, A))
    np.testing.assert_allclose(got[1], want[1])
    got = nj.ops.scan(lambda c, x: (c + x, c * x), jnp.zeros(4), A)
    want = keras.ops.scan(lambda c, x: (c + x, c * x), jnp.zeros(4), A)
    jax.tree.map(np.testing.assert_allclose, got, want)
    np.testing.assert_allclose(nj.ops.vectorized_map(jnp.sum, A), keras.ops.vectorized_map(jnp.sum, A))


# keras.random with an int seed draws from the key [seed, 0]: nnjax gives the same numbers.
RANDOM_CASES = [
    ("normal", ((3, 4),), {"seed": 42}), ("normal", ((5,),), {"mean": 2.0, "stddev": 0.5, "seed": 7}),
    ("uniform", ((3, 4),), {"minval": -1.0, "maxval": 2.0, "seed": 3}), ("randint", ((10,), 0, 9), {"seed": 1}),
    ("truncated_normal", ((4, 4),), {"seed": 5}), ("dropout", (np.ones((4, 6), np.float32), 0.5), {"seed": 2}),
    ("shuffle", (np.arange(10),), {"seed": 4}), ("categorical", (np.log(np.array([[0.2, 0.8], [0.9, 0.1]])), 6), {"seed": 8}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), RANDOM_CASES, ids=[c[0] for c in RANDOM_CASES])
def test_random_ops_match_keras_for_the_same_seed(name, args, kwargs):
    expected = np.asarray(getattr(keras.random, name)(*args, **kwargs))
    got = np.asarray(getattr(nj.random, name)(*args, **kwargs))
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_seed_generator_hands_out_keras_keys_in_order_and_is_model_state():
    ours, theirs = nj.random.SeedGenerator(1337), keras.random.SeedGenerator(1337)
    for _ in range(3):
        np.testing.assert_array_equal(nj.random.normal((4,), seed=ours), keras.random.normal((4,), seed=theirs))

    class Noisy(nj.layers.Layer):
        def __init__(self):
            super().__init__()
            self.seed_generator = nj.random.SeedGenerator(0)

        def call(self, x, *, training=False, key=None):
            return x + nj.random.normal(x.shape, seed=self.seed_generator)

    from flax import nnx

    layer = Noisy()
    layer(jnp.zeros((2,)))
    graphdef, state = nnx.split(layer)

    @jax.jit
    def step(state, x):
        module = nnx.merge(graphdef, state)
        return module(x), nnx.state(module)

    first, state = step(state, jnp.zeros((2,)))
    second, state = step(state, jnp.zeros((2,)))
    assert not np.allclose(first, second)  # the state advanced through the jitted step
    with pytest.raises(ValueError, match="seed=None inside jit"):
        jax.jit(lambda: nj.random.normal((2,)))()


def test_utils_match_keras():
    labels = np.array([[1], [0], [3]])
    np.testing.assert_array_equal(nj.utils.to_categorical(labels, 4), keras.utils.to_categorical(labels, 4))
    np.testing.assert_array_equal(nj.utils.to_categorical([2, 0]), keras.utils.to_categorical([2, 0]))
    np.testing.assert_allclose(nj.utils.normalize(A), keras.utils.normalize(A), atol=1e-6)
    seqs = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    for kwargs in ({}, {"maxlen": 4, "padding": "post"}, {"maxlen": 2, "truncating": "post", "value": -1}):
        np.testing.assert_array_equal(nj.utils.pad_sequences(seqs, **kwargs), keras.utils.pad_sequences(seqs, **kwargs))


def test_layers_show_their_constructor_arguments_in_help():
    import inspect

    hidden = [name for name in nj.layers.__all__ if isinstance(getattr(nj.layers, name), type)
              and issubclass(getattr(nj.layers, name), nj.layers.Layer)
              and "*args" in str(inspect.signature(getattr(nj.layers, name)))]
    assert hidden == [], f"layers whose help() shows (*args, **kwargs): {hidden}"
    assert list(inspect.signature(nj.layers.Dense).parameters)[:3] == ["units", "activation", "use_bias"]
