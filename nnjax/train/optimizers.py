"""Optimizers: plain optax transformations, reachable by Keras names, with Keras 3's numerics.

Nothing here wraps optax in a class. `get("adam")` and `Adam(learning_rate=...)`
both return an `optax.GradientTransformation` whose learning rate lives in its
state (through `optax.inject_hyperparams`), so callbacks can read and change it
between steps without recompiling. The update rules are Keras 3's own
(`nnjax.train.optimizer_rules`), not optax's same-named ones, which differ
(Adam's epsilon placement, amsgrad, Nadam, Lion's hidden weight decay, ...);
plain optax transformations passed to `get` are used as they are.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from nnjax.train import optimizer_rules as rules

# Keras's hyperparameters and defaults, per optimizer (learning rates and epsilons differ from optax's own).
_HYPERPARAMETERS: dict[str, tuple[Callable[..., rules.Rule], dict[str, Any]]] = {
    "sgd": (rules.sgd_rule, {"momentum": 0.0, "nesterov": False}),
    "adam": (rules.adam_rule, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}),
    "adamw": (rules.adam_rule, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}),
    "nadam": (rules.nadam_rule, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
    "adamax": (rules.adamax_rule, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
    "lion": (rules.lion_rule, {"beta_1": 0.9, "beta_2": 0.99}),
    "rmsprop": (rules.rmsprop_rule, {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}),
    "adagrad": (rules.adagrad_rule, {"initial_accumulator_value": 0.1, "epsilon": 1e-7}),
    "adadelta": (rules.adadelta_rule, {"rho": 0.95, "epsilon": 1e-7}),
    "adafactor": (
        rules.adafactor_rule,
        {"beta_2_decay": -0.8, "epsilon_1": 1e-30, "epsilon_2": 1e-3, "clip_threshold": 1.0, "relative_step": True},
    ),
    "ftrl": (
        rules.ftrl_rule,
        {
            "learning_rate_power": -0.5,
            "initial_accumulator_value": 0.1,
            "l1_regularization_strength": 0.0,
            "l2_regularization_strength": 0.0,
            "l2_shrinkage_regularization_strength": 0.0,
            "beta": 0.0,
        },
    ),
    "lamb": (rules.lamb_rule, {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}),
}
_DEFAULT_LR = {name: (0.01 if name == "sgd" else 0.001) for name in _HYPERPARAMETERS}
_DEFAULT_WEIGHT_DECAY = {"adamw": 0.004}
OPTIMIZERS = sorted(_HYPERPARAMETERS)


def clip_each_by_norm(max_norm: float) -> optax.GradientTransformation:
    """Keras's `clipnorm`: each gradient tensor becomes `g * max_norm / max(||g||, max_norm)`."""
    return rules.clip_by_norm_keras(max_norm)


def build(
    name: str,
    learning_rate: float | optax.Schedule | None = None,
    *,
    clipnorm: float | None = None,
    global_clipnorm: float | None = None,
    clipvalue: float | None = None,
    weight_decay: float | None = None,
    exclude_from_weight_decay: Sequence[str] | None = None,
    gradient_accumulation_steps: int | None = None,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
    ema_overwrite_frequency: int | None = None,
    name_scope: str | None = None,
    **hyperparameters: Any,
) -> optax.GradientTransformation:
    """Builds a Keras-named optimizer as an optax transformation with Keras 3's numerics.

    The update of each parameter is Keras's `update_step` (see
    `nnjax.train.optimizer_rules`), in Keras's order: clip the gradients,
    decay the weights (`var -= var * weight_decay * lr`), apply the rule.
    The learning rate lives in the state (`optax.inject_hyperparams`); a
    schedule is evaluated at the number of updates applied so far, as Keras
    evaluates its `LearningRateSchedule` at `optimizer.iterations`.

    Args:
      name: one of `OPTIMIZERS`.
      learning_rate: a float or an optax schedule (e.g. `nj.optimizers.schedules.ExponentialDecay(...)`);
        Keras's default when None.
      clipnorm: clip each gradient tensor's norm (Keras semantics).
      global_clipnorm: clip the global norm of all gradients.
      clipvalue: clip each gradient element to `[-clipvalue, clipvalue]`.
      weight_decay: Keras's decoupled weight decay, for every optimizer (AdamW's default is 0.004).
      exclude_from_weight_decay: regex patterns; parameters whose '/'-joined
        path matches one are not decayed (Keras's
        `optimizer.exclude_from_weight_decay(var_names=...)`, which matches variable names).
      gradient_accumulation_steps: average gradients over this many micro-batches
        before applying them (`optax.MultiSteps`); clipping, weight decay and EMA
        act on the averaged gradient, once per applied update, as in Keras.
      use_ema, ema_momentum, ema_overwrite_frequency: keep an exponential moving
        average of the weights in the optimizer state (`nnjax.train.ema`).
      name_scope: accepted for Keras's `name=` and ignored.
      **hyperparameters: Keras's per-optimizer arguments (`momentum`, `beta_1`, ...).

    Returns:
      An `optax.GradientTransformation`.

    Raises:
      ValueError: for an unknown name or hyperparameter, more than one clipping
        argument or a bad `gradient_accumulation_steps`.
    """
    del name_scope
    name = name.lower()
    if name not in _HYPERPARAMETERS:
        raise ValueError(
            f"compile(optimizer=...): unknown optimizer {name!r}; expected one of {OPTIMIZERS} or an optax.GradientTransformation"
        )
    rule_factory, defaults = _HYPERPARAMETERS[name]
    unknown = sorted(set(hyperparameters) - set(defaults))
    if unknown:
        raise ValueError(
            f"optimizer {name!r}: unknown argument(s) {unknown}; expected Keras's {sorted(defaults)} or the common "
            "clipnorm, clipvalue, global_clipnorm, weight_decay, exclude_from_weight_decay, gradient_accumulation_steps, "
            "use_ema, ema_momentum, ema_overwrite_frequency"
        )
    clipping = {
        k: v for k, v in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm), ("clipvalue", clipvalue)) if v is not None
    }
    if len(clipping) > 1:
        raise ValueError(
            f"optimizer {name!r}: only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set; got {clipping}"
        )
    if gradient_accumulation_steps is not None and (
        isinstance(gradient_accumulation_steps, bool)
        or not isinstance(gradient_accumulation_steps, int)
        or gradient_accumulation_steps < 1
    ):
        raise ValueError(
            f"optimizer {name!r}: `gradient_accumulation_steps` must be an int >= 1 or None; got {gradient_accumulation_steps!r}"
        )
    if exclude_from_weight_decay is not None and (
        isinstance(exclude_from_weight_decay, str) or not all(isinstance(p, str) for p in exclude_from_weight_decay)
    ):
        raise ValueError(
            f"optimizer {name!r}: `exclude_from_weight_decay` must be a list of regex strings; got {exclude_from_weight_decay!r}"
        )
    if learning_rate is None:
        learning_rate = _DEFAULT_LR[name]
    if weight_decay is None:
        weight_decay = _DEFAULT_WEIGHT_DECAY.get(name)
    rule = rule_factory(**{**defaults, **hyperparameters})
    rate = learning_rate
    if callable(learning_rate) and gradient_accumulation_steps and gradient_accumulation_steps > 1:
        # Keras evaluates the schedule at its micro-step counter: the k-th applied update (k = 0, 1, ...) happens at
        # micro-step (k + 1) * steps - 1, while the wrapped transformation below counts applied updates only.
        steps = int(gradient_accumulation_steps)

        def rate(count, schedule=learning_rate):
            return schedule(count * steps + steps - 1)

    def transformation(learning_rate):
        return rules.keras_transformation(rule, learning_rate, weight_decay, exclude_from_weight_decay)

    tx = optax.inject_hyperparams(transformation)(learning_rate=rate)
    parts = []
    # Keras clips only for a positive limit.
    if clipvalue:
        parts.append(rules.clip_by_value_keras(clipvalue))
    if clipnorm:
        parts.append(rules.clip_by_norm_keras(clipnorm))
    if global_clipnorm:
        parts.append(rules.clip_by_global_norm_keras(global_clipnorm))
    if parts:
        tx = optax.chain(*parts, tx)
    if use_ema:
        from nnjax.train.ema import with_ema

        tx = with_ema(tx, ema_momentum, ema_overwrite_frequency)
    if gradient_accumulation_steps and gradient_accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=int(gradient_accumulation_steps)).gradient_transformation()
    tx = _with_keras_hint(tx, name)
    if callable(learning_rate):
        _SCHEDULED.add(tx.update)
    _BUILT_WITH[tx.update] = {
        "name": name, "learning_rate": learning_rate, "clipnorm": clipnorm, "global_clipnorm": global_clipnorm,
        "clipvalue": clipvalue, "weight_decay": weight_decay, "exclude_from_weight_decay": exclude_from_weight_decay,
        "gradient_accumulation_steps": gradient_accumulation_steps, "use_ema": use_ema, "ema_momentum": ema_momentum,
        "ema_overwrite_frequency": ema_overwrite_frequency, **hyperparameters,
    }
    return tx


# Keras optimizer methods an optax transformation lacks: asked for, they say what to use instead.
_KERAS_OPTIMIZER_METHODS = ("stateless_apply", "apply_gradients", "apply", "build", "variables", "iterations",
                            "learning_rate", "minimize", "get_config")  # fmt: skip


class _KerasHint:
    """What a Keras user who reaches for a Keras optimizer method on an nnjax optimizer is told."""

    __slots__ = ()

    def __getattr__(self, attribute):
        if attribute in _KERAS_OPTIMIZER_METHODS:
            raise AttributeError(
                f"nnjax optimizers are optax transformations (init/update), not Keras optimizer objects: "
                f"`{attribute}` is not there. Inside fit, `model.optimizer` has Keras's `stateless_apply`, "
                "`learning_rate` and `iterations`; in your own loop use `opt_state = tx.init(params)`, "
                "`updates, opt_state = tx.update(grads, opt_state, params)`, `params = optax.apply_updates(params, updates)`"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")


class _Transformation(_KerasHint, optax.GradientTransformation):
    __slots__ = ()


class _TransformationExtraArgs(_KerasHint, optax.GradientTransformationExtraArgs):
    __slots__ = ()


def _with_keras_hint(tx, name: str):
    """`tx` as the same optax transformation whose missing Keras methods raise an actionable error."""
    del name
    if isinstance(tx, optax.GradientTransformationExtraArgs):
        return _TransformationExtraArgs(tx.init, tx.update)
    return _Transformation(tx.init, tx.update)


# The arguments `build` made each transformation with (keyed by its `update`): what whole-model saving writes.
_BUILT_WITH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_arguments(tx) -> dict | None:
    """The arguments of the `build` call that made `tx` (`name`, `learning_rate`, ...), or None if `build` did not."""
    try:
        config = _BUILT_WITH.get(getattr(tx, "update", None))
    except TypeError:
        return None
    return None if config is None else dict(config)


# `update` functions of the transformations `build` made with a learning-rate schedule: fit logs their rate.
_SCHEDULED: weakref.WeakSet = weakref.WeakSet()


def has_schedule(tx) -> bool:
    """True if `tx` was built by nnjax with a schedule as its learning rate (so the rate changes every step)."""
    try:
        return getattr(tx, "update", None) in _SCHEDULED
    except TypeError:  # an update function that cannot be weakly referenced
        return False


def get(identifier) -> optax.GradientTransformation:
    """Resolves an optimizer name or an optax transformation.

    Raises:
      ValueError: for an unknown name; the message lists the valid names.
      TypeError: for anything that is neither.
    """
    if isinstance(identifier, optax.GradientTransformation):
        return identifier
    if isinstance(identifier, str):
        return build(identifier)
    if hasattr(identifier, "init") and hasattr(identifier, "update"):
        return optax.GradientTransformation(identifier.init, identifier.update)
    raise TypeError(
        f"compile(optimizer=...): expected an optimizer name (one of {OPTIMIZERS}) or an optax.GradientTransformation; got {identifier!r}"
    )


# optax.inject_hyperparams builds InjectStatefulHyperparamsState since optax 0.2.5; older states are InjectHyperparamsState.
_INJECT_STATES = tuple(
    t for t in (getattr(optax, "InjectHyperparamsState", None), getattr(optax, "InjectStatefulHyperparamsState", None)) if t
)


def _is_inject_state(s) -> bool:
    return isinstance(s, _INJECT_STATES)


def _hyperparam_states(opt_state):
    leaves = jax.tree.leaves(opt_state, is_leaf=_is_inject_state)
    return [s for s in leaves if _is_inject_state(s) and "learning_rate" in s.hyperparams]


def get_learning_rate(opt_state):
    """The current learning rate stored in an optimizer state, or None if it has none.

    Works for any transformation built with `optax.inject_hyperparams` (all of
    nnjax's named optimizers), including inside `optax.chain` and `MultiSteps`.
    """
    states = _hyperparam_states(opt_state)
    return states[0].hyperparams["learning_rate"] if states else None


def set_learning_rate(opt_state, value):
    """Returns `opt_state` with its injected learning rate replaced by `value`.

    Raises:
      ValueError: if the optimizer has no injected learning rate.
    """
    found = []

    def replace(s):
        if _is_inject_state(s) and "learning_rate" in s.hyperparams:
            found.append(True)
            old = s.hyperparams["learning_rate"]
            hyperparams = dict(s.hyperparams)
            hyperparams["learning_rate"] = jnp.asarray(value, dtype=jnp.asarray(old).dtype).reshape(jnp.shape(old))
            return s._replace(hyperparams=hyperparams)
        return s

    new = jax.tree.map(replace, opt_state, is_leaf=_is_inject_state)
    if not found:
        raise ValueError(
            "set_learning_rate: the optimizer state has no injected learning rate; build the optimizer with "
            "optax.inject_hyperparams or an nnjax name/constructor (e.g. 'adam', nj.optimizers.Adam())"
        )
    return new


def _keras_kwargs(kw: dict) -> dict:
    if "name" in kw:  # Keras's optimizer name
        kw = dict(kw)
        kw["name_scope"] = kw.pop("name")
    return kw


def SGD(learning_rate=0.01, momentum=0.0, nesterov=False, **kw) -> optax.GradientTransformation:  # noqa: N802
    """Keras's SGD: `m = momentum * m - lr * g; var += m` (so a schedule's rate enters the velocity, as in Keras)."""
    return build("sgd", learning_rate, momentum=momentum, nesterov=nesterov, **_keras_kwargs(kw))


def Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kw):  # noqa: N802
    """Keras's Adam: `var -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)` (Keras's epsilon placement, not optax's)."""
    return build("adam", learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad, **_keras_kwargs(kw))


def AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kw):  # noqa: N802
    """Keras's AdamW: Keras's Adam after `var -= var * weight_decay * lr`.

    Raises:
      ValueError: for `weight_decay=None`, as Keras.
    """
    if weight_decay is None:
        raise ValueError("AdamW: `weight_decay` must be a float; got None")
    return build(
        "adamw",
        learning_rate,
        weight_decay=weight_decay,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        amsgrad=amsgrad,
        **_keras_kwargs(kw),
    )


def RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kw):  # noqa: N802
    """Keras's RMSprop: `var -= lr * g / sqrt(v + eps)` (optionally centered, with momentum)."""
    return build("rmsprop", learning_rate, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered, **_keras_kwargs(kw))


def Adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kw):  # noqa: N802
    """Keras's Adagrad: `acc += g^2; var -= lr * g / sqrt(acc + eps)`."""
    return build(
        "adagrad", learning_rate, initial_accumulator_value=initial_accumulator_value, epsilon=epsilon, **_keras_kwargs(kw)
    )


def Adadelta(learning_rate=0.001, rho=0.95, epsilon=1e-7, **kw):  # noqa: N802
    """Keras's Adadelta."""
    return build("adadelta", learning_rate, rho=rho, epsilon=epsilon, **_keras_kwargs(kw))


def Adamax(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):  # noqa: N802
    """Keras's Adamax: `var -= lr * m / ((1 - b1^t) * (u + eps))`."""
    return build("adamax", learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **_keras_kwargs(kw))


def Nadam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):  # noqa: N802
    """Keras's Nadam, with its momentum schedule `beta_1 * (1 - 0.5 * 0.96^t)`."""
    return build("nadam", learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **_keras_kwargs(kw))


def Lion(learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kw):  # noqa: N802
    """Keras's Lion (no weight decay unless `weight_decay=` is given, unlike `optax.lion`)."""
    return build("lion", learning_rate, beta_1=beta_1, beta_2=beta_2, **_keras_kwargs(kw))


def Adafactor(  # noqa: N802
    learning_rate=0.001, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3, clip_threshold=1.0, relative_step=True, **kw
):
    """Keras's Adafactor (factored second moments over the last two axes)."""
    return build(
        "adafactor",
        learning_rate,
        beta_2_decay=beta_2_decay,
        epsilon_1=epsilon_1,
        epsilon_2=epsilon_2,
        clip_threshold=clip_threshold,
        relative_step=relative_step,
        **_keras_kwargs(kw),
    )


def Ftrl(  # noqa: N802
    learning_rate=0.001,
    learning_rate_power=-0.5,
    initial_accumulator_value=0.1,
    l1_regularization_strength=0.0,
    l2_regularization_strength=0.0,
    l2_shrinkage_regularization_strength=0.0,
    beta=0.0,
    **kw,
):
    """Keras's FTRL-proximal."""
    return build(
        "ftrl",
        learning_rate,
        learning_rate_power=learning_rate_power,
        initial_accumulator_value=initial_accumulator_value,
        l1_regularization_strength=l1_regularization_strength,
        l2_regularization_strength=l2_regularization_strength,
        l2_shrinkage_regularization_strength=l2_shrinkage_regularization_strength,
        beta=beta,
        **_keras_kwargs(kw),
    )


def Lamb(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):  # noqa: N802
    """Keras's Lamb (Adam's direction with a layer-wise trust ratio)."""
    return build("lamb", learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **_keras_kwargs(kw))


# The constructor of each name in OPTIMIZERS.
CONSTRUCTORS = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "adadelta": Adadelta,
    "adamax": Adamax,
    "nadam": Nadam,
    "lion": Lion,
    "adafactor": Adafactor,
    "ftrl": Ftrl,
    "lamb": Lamb,
}


__all__ = [
    "CONSTRUCTORS",
    "OPTIMIZERS",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Ftrl",
    "Lamb",
    "Lion",
    "Nadam",
    "RMSprop",
    "build",
    "clip_each_by_norm",
    "get",
    "get_learning_rate",
    "has_schedule",
    "set_learning_rate",
]
