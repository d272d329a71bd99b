"""Every Keras-named optimizer nnjax exports takes Keras 3's steps, with Keras 3 as the oracle.

One registry of cases (`CASES`): each builds `keras.optimizers.X(**kw)` and
`nj.optimizers.X(**kw)` with the same arguments, runs 6 steps on the same
parameters and gradients (a 3-D, a 2-D and a 1-D tensor, gradients both tiny
and large so that epsilon placement and clipping matter) and compares the
parameters. Tolerance: float32, atol 1e-6 with rtol 1e-6 (both sides evaluate
the same expressions in the same order; the differences are XLA's fusion
rounding, a few ulps after 6 steps).
"""

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")

STEPS = 6
SHAPES = {"conv": (2, 3, 4), "kernel": (3, 4), "bias": (4,)}


def _schedules():
    """(nnjax schedule, Keras schedule) pairs with the same configuration, one per Keras schedule."""
    s, ks = nj.optimizers.schedules, keras.optimizers.schedules
    configs = {
        "ExponentialDecay": dict(initial_learning_rate=0.02, decay_steps=2, decay_rate=0.5),
        "InverseTimeDecay": dict(initial_learning_rate=0.02, decay_steps=2, decay_rate=0.5, staircase=True),
        "PiecewiseConstantDecay": dict(boundaries=[1, 3], values=[0.02, 0.01, 0.005]),
        "PolynomialDecay": dict(initial_learning_rate=0.02, decay_steps=4, end_learning_rate=0.001, power=2.0),
        "CosineDecay": dict(initial_learning_rate=0.005, decay_steps=4, alpha=0.1, warmup_target=0.02, warmup_steps=2),
        "CosineDecayRestarts": dict(initial_learning_rate=0.02, first_decay_steps=2, t_mul=2.0, m_mul=0.5),
    }
    return {name: (getattr(s, name), getattr(ks, name), cfg) for name, cfg in configs.items()}


SCHEDULE_NAMES = [
    "ExponentialDecay",
    "InverseTimeDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "CosineDecay",
    "CosineDecayRestarts",
]
# Keras class name for each nnjax name, and a learning rate that moves the weights visibly in 6 steps.
KERAS_NAMES = {
    "sgd": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "lion": "Lion",
    "adafactor": "Adafactor",
    "ftrl": "Ftrl",
    "lamb": "Lamb",
}
LEARNING_RATE = {"sgd": 0.1, "adadelta": 1.0, "ftrl": 0.1}

SPECIAL = {
    "sgd": [dict(momentum=0.9), dict(momentum=0.9, nesterov=True)],
    "adam": [dict(amsgrad=True), dict(beta_1=0.8, beta_2=0.99, epsilon=1e-3)],
    "adamw": [dict(amsgrad=True), dict(weight_decay=0.3)],
    "rmsprop": [dict(momentum=0.5), dict(centered=True), dict(momentum=0.5, centered=True)],
    "adagrad": [dict(initial_accumulator_value=0.5, epsilon=1e-3)],
    "adadelta": [dict(rho=0.5)],
    "adamax": [dict(beta_1=0.8, epsilon=1e-3)],
    "nadam": [dict(beta_1=0.8, beta_2=0.99)],
    "lion": [dict(beta_1=0.5, beta_2=0.9)],
    "adafactor": [dict(beta_2_decay=-0.5, clip_threshold=0.5, epsilon_2=0.5)],
    "ftrl": [
        dict(l1_regularization_strength=0.01, l2_regularization_strength=0.1),
        dict(learning_rate_power=-0.7, l2_shrinkage_regularization_strength=0.05, beta=0.5),
    ],
    "lamb": [dict(beta_1=0.8, epsilon=1e-3)],
}


def _cases():
    cases = []
    for i, name in enumerate(sorted(KERAS_NAMES)):
        lr = LEARNING_RATE.get(name, 0.01)
        variants = [
            ("constant", dict(learning_rate=lr)),
            ("clipnorm", dict(learning_rate=lr, clipnorm=0.5)),
            ("clipvalue", dict(learning_rate=lr, clipvalue=0.05)),
            ("global_clipnorm", dict(learning_rate=lr, global_clipnorm=0.5)),
            ("weight_decay", dict(learning_rate=lr, weight_decay=0.1)),
            ("schedule", dict(learning_rate=SCHEDULE_NAMES[i % len(SCHEDULE_NAMES)])),
        ]
        variants += [(f"special{j}", dict(learning_rate=lr, **kw)) for j, kw in enumerate(SPECIAL[name])]
        cases += [(name, variant, kw) for variant, kw in variants]
    # Every schedule drives SGD with momentum and Adam (both read the rate in their update).
    for schedule in SCHEDULE_NAMES:
        cases.append(("sgd", f"schedule_{schedule}", dict(learning_rate=schedule, momentum=0.9)))
        cases.append(("adam", f"schedule_{schedule}", dict(learning_rate=schedule)))
    cases.append(("adamw", "exclude_from_weight_decay", dict(learning_rate=0.01, weight_decay=0.5, exclude=["bias"])))
    # Gradient accumulation (Keras averages `steps` micro-batches; a schedule sees the micro-step counter) and EMA.
    cases.append(("adam", "accumulate", dict(learning_rate=0.01, gradient_accumulation_steps=2, global_clipnorm=0.5)))
    cases.append(
        ("sgd", "accumulate_schedule", dict(learning_rate="ExponentialDecay", momentum=0.9, gradient_accumulation_steps=3))
    )
    cases.append(("adamw", "ema_overwrite", dict(learning_rate=0.01, use_ema=True, ema_momentum=0.7, ema_overwrite_frequency=2)))
    return cases


CASES = _cases()


def _params_and_grads():
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    grads = []
    for step in range(STEPS):
        g = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
        g["bias"] = g["bias"] * (1e-4 if step % 2 else 3.0)  # tiny gradients: Keras's epsilon placement shows
        g["conv"] = g["conv"] * 0.01
        grads.append(g)
    return params, grads


def _build(name, kw):
    kw = dict(kw)
    exclude = kw.pop("exclude", None)
    keras_kw, nj_kw = dict(kw), dict(kw)
    if isinstance(kw["learning_rate"], str):
        nj_schedule, keras_schedule, cfg = _schedules()[kw["learning_rate"]]
        nj_kw["learning_rate"], keras_kw["learning_rate"] = nj_schedule(**cfg), keras_schedule(**cfg)
    keras_opt = getattr(keras.optimizers, KERAS_NAMES[name])(**keras_kw)
    if exclude:
        keras_opt.exclude_from_weight_decay(var_names=exclude)
        nj_kw["exclude_from_weight_decay"] = exclude
    return keras_opt, getattr(nj.optimizers, KERAS_NAMES[name])(**nj_kw)


def _keras_run(opt, params, grads):
    variables = [keras.Variable(v, name=k) for k, v in params.items()]
    for g in grads:
        opt.apply_gradients([(g[k], var) for k, var in zip(params, variables)])
    return {k: np.asarray(var.value) for k, var in zip(params, variables)}


def _nnjax_run(tx, params, grads):
    import jax
    import optax

    @jax.jit
    def step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    p = jax.tree.map(jax.numpy.asarray, params)
    state = tx.init(p)
    for g in grads:
        p, state = step(p, state, g)
    return {k: np.asarray(v) for k, v in p.items()}


@pytest.mark.parametrize(("name", "variant", "kw"), CASES, ids=[f"{n}-{v}" for n, v, _ in CASES])
def test_optimizer_matches_keras(name, variant, kw):
    params, grads = _params_and_grads()
    keras_opt, tx = _build(name, kw)
    expected = _keras_run(keras_opt, params, grads)
    got = _nnjax_run(tx, params, grads)
    for key in params:
        assert not np.allclose(expected[key], params[key], atol=1e-7) or name == "lion" and key == "bias", f"{key} did not move"
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-6, err_msg=f"{name} {variant}: {key}")


def test_registry_covers_every_optimizer():
    """A new optimizer name cannot be exported without a parity case of every variant."""
    assert set(KERAS_NAMES) == set(nj.optimizers.OPTIMIZERS) == set(nj.optimizers.CONSTRUCTORS)
    for name in nj.optimizers.OPTIMIZERS:
        variants = {v for n, v, _ in CASES if n == name}
        assert {"constant", "clipnorm", "clipvalue", "global_clipnorm", "weight_decay", "schedule"} <= variants, name
    # ... and every schedule nnjax exports drives at least one case.
    assert set(SCHEDULE_NAMES) == {fn.__name__ for fn in nj.optimizers.schedules.SCHEDULES.values()}


def test_adam_differs_from_optax_adam_where_keras_does():
    """Guard: with tiny gradients Keras's epsilon placement moves weights differently from optax.adam."""
    import optax

    params, grads = _params_and_grads()
    grads = [{k: g * 1e-6 for k, g in gs.items()} for gs in grads]
    ours = _nnjax_run(nj.optimizers.Adam(0.01), params, grads)
    theirs = _nnjax_run(optax.adam(0.01, eps=1e-7), params, grads)
    assert not np.allclose(ours["kernel"], theirs["kernel"], atol=1e-6)


def test_plain_optax_transformation_is_used_unchanged():
    import optax

    tx = optax.adam(0.01)
    assert nj.optimizers.get(tx) is tx


def test_unknown_hyperparameter_raises():
    with pytest.raises(ValueError, match="unknown argument"):
        nj.optimizers.Adam(0.01, beta1=0.5)
