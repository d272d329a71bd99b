"""Optimizers: plain optax transformations, reachable by Keras names.

Nothing here wraps optax in a class. `get("adam")` and `Adam(learning_rate=...)`
both return an `optax.GradientTransformation` whose learning rate lives in its
state (through `optax.inject_hyperparams`), so callbacks can read and change it
between steps without recompiling.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

# Keras's defaults (learning rates and epsilons differ from optax's own).
_DEFAULT_LR = {
    "sgd": 0.01,
    "adam": 0.001,
    "adamw": 0.001,
    "rmsprop": 0.001,
    "adagrad": 0.001,
    "adadelta": 0.001,
    "adamax": 0.001,
    "nadam": 0.001,
    "lion": 0.001,
    "adafactor": 0.001,
    "lamb": 0.001,
    "ftrl": 0.001,
}
OPTIMIZERS = sorted(_DEFAULT_LR)


def _base(name: str, **kw) -> Callable[..., optax.GradientTransformation]:
    """Returns an optax factory taking `learning_rate` plus Keras hyperparameters."""
    if name == "sgd":
        momentum = kw.get("momentum", 0.0)
        return lambda learning_rate: optax.sgd(learning_rate, momentum=momentum or None, nesterov=kw.get("nesterov", False))
    if name in ("adam", "adamw", "nadam"):
        b1, b2, eps = kw.get("beta_1", 0.9), kw.get("beta_2", 0.999), kw.get("epsilon", 1e-7)
        if name == "adamw":
            wd = kw.get("weight_decay", 0.004)
            return lambda learning_rate: optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=wd)
        if kw.get("amsgrad"):
            return lambda learning_rate: optax.amsgrad(learning_rate, b1=b1, b2=b2, eps=eps)
        return lambda learning_rate: optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, nesterov=name == "nadam")
    if name == "rmsprop":
        return lambda learning_rate: optax.rmsprop(
            learning_rate,
            decay=kw.get("rho", 0.9),
            eps=kw.get("epsilon", 1e-7),
            momentum=kw.get("momentum", 0.0) or None,
            centered=kw.get("centered", False),
        )
    if name == "adagrad":
        return lambda learning_rate: optax.adagrad(
            learning_rate, initial_accumulator_value=kw.get("initial_accumulator_value", 0.1), eps=kw.get("epsilon", 1e-7)
        )
    if name == "adadelta":
        return lambda learning_rate: optax.adadelta(learning_rate, rho=kw.get("rho", 0.95), eps=kw.get("epsilon", 1e-7))
    if name == "adamax":
        return lambda learning_rate: optax.adamax(learning_rate, b1=kw.get("beta_1", 0.9), b2=kw.get("beta_2", 0.999), eps=kw.get("epsilon", 1e-7))
    if name == "lion":
        return lambda learning_rate: optax.lion(learning_rate, b1=kw.get("beta_1", 0.9), b2=kw.get("beta_2", 0.99))
    if name == "adafactor":
        return lambda learning_rate: optax.adafactor(learning_rate)
    if name == "lamb":
        return lambda learning_rate: optax.lamb(learning_rate, eps=kw.get("epsilon", 1e-6))
    if name == "ftrl":
        # optax has no FTRL; Keras's FTRL with default settings is close to adagrad.
        return lambda learning_rate: optax.adagrad(learning_rate, initial_accumulator_value=0.1)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def clip_each_by_norm(max_norm: float) -> optax.GradientTransformation:
    """Keras's `clipnorm`: clips each gradient tensor to norm <= `max_norm` on its own."""

    def update_fn(updates, state, params=None):
        del params

        def clip(g):
            norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
            scale = jnp.where(norm > max_norm, max_norm / jnp.maximum(norm, 1e-12), 1.0)
            return (g * scale).astype(g.dtype)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def _with_decoupled_weight_decay(factory: Callable, weight_decay: float) -> Callable[..., optax.GradientTransformation]:
    """Keras's weight decay: `param -= learning_rate * weight_decay * param`, next to the optimizer's own update."""

    def decayed(learning_rate):
        def update_fn(updates, state, params=None):
            if params is None:
                raise ValueError("weight_decay: `update` needs the current params; call tx.update(grads, opt_state, params)")
            return jax.tree.map(lambda u, p: u - (learning_rate * weight_decay * p).astype(u.dtype), updates, params), state

        return optax.chain(factory(learning_rate), optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn))

    return decayed


def build(
    name: str,
    learning_rate: float | optax.Schedule | None = None,
    *,
    clipnorm: float | None = None,
    global_clipnorm: float | None = None,
    clipvalue: float | None = None,
    weight_decay: float | None = None,
    gradient_accumulation_steps: int | None = None,
    use_ema: bool = False,
    ema_momentum: float = 0.99,
    ema_overwrite_frequency: int | None = None,
    **hyperparameters: Any,
) -> optax.GradientTransformation:
    """Builds a Keras-named optimizer as an optax transformation.

    Args:
      name: one of `OPTIMIZERS`.
      learning_rate: a float or an optax schedule; Keras's default when None.
      clipnorm: clip each gradient tensor's norm (Keras semantics).
      global_clipnorm: clip the global norm of all gradients (`optax.clip_by_global_norm`).
      clipvalue: clip each gradient element to `[-clipvalue, clipvalue]`.
      weight_decay: decoupled weight decay, as Keras: each update also subtracts
        `learning_rate * weight_decay * param` (AdamW for Adam).
      gradient_accumulation_steps: average gradients over this many micro-batches
        before applying them (`optax.MultiSteps`); clipping, weight decay and EMA
        act on the averaged gradient, once per applied update, as in Keras.
      use_ema, ema_momentum, ema_overwrite_frequency: keep an exponential moving
        average of the weights in the optimizer state (`nnjax.train.ema`).
      **hyperparameters: Keras's per-optimizer arguments (`momentum`, `beta_1`, ...).

    Returns:
      An `optax.GradientTransformation`.

    Raises:
      ValueError: for an unknown name, more than one clipping argument or a bad
        `gradient_accumulation_steps`.
    """
    name = name.lower()
    if name not in _DEFAULT_LR:
        raise ValueError(f"compile(optimizer=...): unknown optimizer {name!r}; expected one of {OPTIMIZERS} or an optax.GradientTransformation")
    clipping = {k: v for k, v in (("clipnorm", clipnorm), ("global_clipnorm", global_clipnorm), ("clipvalue", clipvalue)) if v is not None}
    if len(clipping) > 1:
        raise ValueError(f"optimizer {name!r}: only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set; got {clipping}")
    if gradient_accumulation_steps is not None and (
        isinstance(gradient_accumulation_steps, bool) or not isinstance(gradient_accumulation_steps, int) or gradient_accumulation_steps < 1
    ):
        raise ValueError(f"optimizer {name!r}: `gradient_accumulation_steps` must be an int >= 1 or None; got {gradient_accumulation_steps!r}")
    if learning_rate is None:
        learning_rate = _DEFAULT_LR[name]
    if weight_decay and name == "adam":
        name, hyperparameters = "adamw", {**hyperparameters, "weight_decay": weight_decay}
        weight_decay = None
    elif name == "adamw" and weight_decay is not None:
        hyperparameters = {**hyperparameters, "weight_decay": weight_decay}
        weight_decay = None
    base = _base(name, **hyperparameters)
    if weight_decay:
        base = _with_decoupled_weight_decay(base, weight_decay)
    tx = optax.inject_hyperparams(base)(learning_rate=learning_rate)
    parts = []
    if clipvalue is not None:
        parts.append(optax.clip(clipvalue))
    if clipnorm is not None:
        parts.append(clip_each_by_norm(clipnorm))
    if global_clipnorm is not None:
        parts.append(optax.clip_by_global_norm(global_clipnorm))
    if parts:
        tx = optax.chain(*parts, tx)
    if use_ema:
        from nnjax.train.ema import with_ema

        tx = with_ema(tx, ema_momentum, ema_overwrite_frequency)
    if gradient_accumulation_steps and gradient_accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=int(gradient_accumulation_steps)).gradient_transformation()
    if callable(learning_rate):
        _SCHEDULED.add(tx.update)
    return tx


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
_INJECT_STATES = tuple(t for t in (getattr(optax, "InjectHyperparamsState", None), getattr(optax, "InjectStatefulHyperparamsState", None)) if t)


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


def SGD(learning_rate=0.01, momentum=0.0, nesterov=False, **kw) -> optax.GradientTransformation:  # noqa: N802
    """Keras's SGD as an optax transformation (`optax.sgd`)."""
    return build("sgd", learning_rate, momentum=momentum, nesterov=nesterov, **kw)


def Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kw):  # noqa: N802
    """Keras's Adam as an optax transformation (`optax.adam`, epsilon 1e-7 as in Keras)."""
    return build("adam", learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad, **kw)


def AdamW(learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):  # noqa: N802
    """Keras's AdamW as an optax transformation (`optax.adamw`)."""
    return build("adamw", learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kw)


def RMSprop(learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kw):  # noqa: N802
    """Keras's RMSprop as an optax transformation (`optax.rmsprop`)."""
    return build("rmsprop", learning_rate, rho=rho, momentum=momentum, epsilon=epsilon, centered=centered, **kw)


def Adagrad(learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kw):  # noqa: N802
    return build("adagrad", learning_rate, initial_accumulator_value=initial_accumulator_value, epsilon=epsilon, **kw)


def Adadelta(learning_rate=0.001, rho=0.95, epsilon=1e-7, **kw):  # noqa: N802
    return build("adadelta", learning_rate, rho=rho, epsilon=epsilon, **kw)


def Adamax(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):  # noqa: N802
    return build("adamax", learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kw)


def Nadam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):  # noqa: N802
    return build("nadam", learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **kw)


def Lion(learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kw):  # noqa: N802
    return build("lion", learning_rate, beta_1=beta_1, beta_2=beta_2, **kw)


__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
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
