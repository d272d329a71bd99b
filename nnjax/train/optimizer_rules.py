"""Keras 3's optimizer algorithms as optax transformations, one update rule per optimizer.

Each rule is Keras's `update_step` for one variable, written with the same
expressions in the same order, so a float32 run matches Keras 3 to rounding.
`keras_transformation` runs a rule over a parameter pytree together with
Keras's decoupled weight decay (`var -= var * weight_decay * lr`, applied to
the variable before the rule reads it), and `clip_by_norm_keras` /
`clip_by_global_norm_keras` / `clip_by_value_keras` are Keras's gradient
clipping.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class KerasOptimizerState(NamedTuple):
    """State of a `keras_transformation`."""

    count: jax.Array  # int32 []: updates applied so far (Keras's `iterations`)
    extra: jax.Array  # float32 []: an optimizer-wide scalar (Nadam's momentum product; 1.0 otherwise)
    slots: tuple  # one pytree per slot name of the rule, each with the params' tree structure


@dataclasses.dataclass(frozen=True)
class Rule:
    """One Keras optimizer's per-variable update.

    Attributes:
      slots: names of the per-variable state tensors ("momentum", "velocity", ...).
      init: `param -> tuple of slot arrays`, in the order of `slots`.
      step: `(grad, var, slots, lr, t, extra) -> (update, new_slots)` where
        `update` is added to the variable (Keras's `assign_add`; `assign_sub(x)`
        is an update of `-x`), `t` is `iterations + 1` in the variable's dtype
        and `var` is the variable after weight decay (None when the rule does
        not read it and no weight decay applies).
      needs_var: the rule reads the variable's value (Ftrl, Lamb, Adafactor).
      advance: `(extra, t) -> extra`, run once per step before the variables
        are updated (Nadam's momentum product); None for most rules.
    """

    slots: tuple[str, ...]
    init: Callable
    step: Callable
    needs_var: bool = False
    advance: Callable | None = None


def _zeros(p):
    return jnp.zeros_like(p)


def _f(x, dtype):
    return jnp.asarray(x, dtype)


def sgd_rule(momentum: float = 0.0, nesterov: bool = False) -> Rule:
    """Keras's SGD: `m = momentum * m - lr * g; var += m` (nesterov: `var += momentum * m - lr * g`)."""
    if momentum == 0:

        def plain(g, var, slots, lr, t, extra):
            return -(g * lr), slots

        return Rule((), lambda p: (), plain)

    def step(g, var, slots, lr, t, extra):
        (m,) = slots
        mu = _f(momentum, g.dtype)
        m = m * mu - g * lr
        update = m * mu - g * lr if nesterov else m
        return update, (m,)

    return Rule(("momentum",), lambda p: (_zeros(p),), step)


def adam_rule(beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False) -> Rule:
    """Keras's Adam: `var -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`; amsgrad takes the max of raw v."""

    def step(g, var, slots, lr, t, extra):
        m, v = slots[0], slots[1]
        beta_1_power = jnp.power(_f(beta_1, g.dtype), t)
        beta_2_power = jnp.power(_f(beta_2, g.dtype), t)
        alpha = lr * jnp.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m = m + (g - m) * (1 - beta_1)
        v = v + (jnp.square(g) - v) * (1 - beta_2)
        new = (m, v)
        if amsgrad:
            v_hat = jnp.maximum(slots[2], v)
            new, v = (m, v, v_hat), v_hat
        return -((m * alpha) / (jnp.sqrt(v) + epsilon)), new

    names = ("momentum", "velocity", "velocity_hat") if amsgrad else ("momentum", "velocity")
    return Rule(names, lambda p: tuple(_zeros(p) for _ in names), step)


def nadam_rule(beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> Rule:
    """Keras's Nadam with its momentum schedule `u_t = beta_1 * (1 - 0.5 * 0.96^t)`."""

    def advance(u_product, t):
        return u_product * beta_1 * (1.0 - 0.5 * jnp.power(_f(0.96, u_product.dtype), t.astype(u_product.dtype)))

    def step(g, var, slots, lr, t, u_product):
        m, v = slots
        dtype = g.dtype
        decay = _f(0.96, dtype)
        b1, b2 = _f(beta_1, dtype), _f(beta_2, dtype)
        u_t = b1 * (1.0 - 0.5 * jnp.power(decay, t))
        u_t_1 = b1 * (1.0 - 0.5 * jnp.power(decay, t + 1))
        u_product_t = u_product.astype(dtype)
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = jnp.power(b2, t)
        m = m + (g - m) * (1 - b1)
        v = v + (jnp.square(g) - v) * (1 - b2)
        m_hat = (u_t_1 * m) / (1 - u_product_t_1) + ((1 - u_t) * g) / (1 - u_product_t)
        v_hat = v / (1 - beta_2_power)
        return -((m_hat * lr) / (jnp.sqrt(v_hat) + epsilon)), (m, v)

    return Rule(("momentum", "velocity"), lambda p: (_zeros(p), _zeros(p)), step, advance=advance)


def adamax_rule(beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> Rule:
    """Keras's Adamax: `var -= lr * m / ((1 - b1^t) * (u + eps))`, `u = max(b2 * u, |g|)`."""

    def step(g, var, slots, lr, t, extra):
        m, u = slots
        beta_1_power = jnp.power(_f(beta_1, g.dtype), t)
        m = m + (g - m) * (1 - beta_1)
        u = jnp.maximum(beta_2 * u, jnp.abs(g))
        return -((lr * m) / ((1 - beta_1_power) * (u + epsilon))), (m, u)

    return Rule(("momentum", "norm"), lambda p: (_zeros(p), _zeros(p)), step)


def lion_rule(beta_1: float = 0.9, beta_2: float = 0.99) -> Rule:
    """Keras's Lion: `var -= lr * sign(b1 * m + (1 - b1) * g)`, then `m = b2 * m + (1 - b2) * g` (no hidden decay)."""

    def step(g, var, slots, lr, t, extra):
        (m,) = slots
        b1, b2 = _f(beta_1, g.dtype), _f(beta_2, g.dtype)
        update = -(lr * jnp.sign(m * b1 + g * (1.0 - b1)))
        return update, (m * b2 + g * (1.0 - b2),)

    return Rule(("momentum",), lambda p: (_zeros(p),), step)


def rmsprop_rule(rho: float = 0.9, momentum: float = 0.0, epsilon: float = 1e-7, centered: bool = False) -> Rule:
    """Keras's RMSprop: `v = rho * v + (1 - rho) * g^2`; `var -= lr * g / sqrt(v + eps)` (eps inside the root)."""
    names = ("velocity",) + (("momentum",) if momentum > 0 else ()) + (("average_gradient",) if centered else ())

    def step(g, var, slots, lr, t, extra):
        named = dict(zip(names, slots))
        velocity = rho * named["velocity"] + (1 - rho) * jnp.square(g)
        new = {"velocity": velocity}
        if centered:
            average_grad = rho * named["average_gradient"] + (1 - rho) * g
            new["average_gradient"] = average_grad
            denominator = velocity - jnp.square(average_grad) + epsilon
        else:
            denominator = velocity + epsilon
        increment = (lr * g) / jnp.sqrt(denominator)
        if momentum > 0:
            new["momentum"] = momentum * named["momentum"] + increment
            update = -new["momentum"]
        else:
            update = -increment
        return update, tuple(new[n] for n in names)

    return Rule(names, lambda p: tuple(_zeros(p) for _ in names), step)


def adagrad_rule(initial_accumulator_value: float = 0.1, epsilon: float = 1e-7) -> Rule:
    """Keras's Adagrad: `acc += g^2; var -= lr * g / sqrt(acc + eps)`."""

    def step(g, var, slots, lr, t, extra):
        (acc,) = slots
        acc = acc + jnp.square(g)
        return -((lr * g) / jnp.sqrt(acc + epsilon)), (acc,)

    return Rule(("accumulator",), lambda p: (jnp.full_like(p, initial_accumulator_value),), step)


def adadelta_rule(rho: float = 0.95, epsilon: float = 1e-7) -> Rule:
    """Keras's Adadelta (the learning rate multiplies the Adadelta step)."""

    def rms(x):
        return jnp.sqrt(x + epsilon)

    def step(g, var, slots, lr, t, extra):
        accumulated_grad, accumulated_delta_var = slots
        accumulated_grad = rho * accumulated_grad + (1 - rho) * jnp.square(g)
        delta_var = -((rms(accumulated_delta_var) * g) / rms(accumulated_grad))
        accumulated_delta_var = rho * accumulated_delta_var + (1 - rho) * jnp.square(delta_var)
        return lr * delta_var, (accumulated_grad, accumulated_delta_var)

    return Rule(("accumulated_grad", "accumulated_delta_var"), lambda p: (_zeros(p), _zeros(p)), step)


def _rms(x):
    return jnp.sqrt(jnp.mean(jnp.square(x)))


def adafactor_rule(
    beta_2_decay: float = -0.8,
    epsilon_1: float = 1e-30,
    epsilon_2: float = 1e-3,
    clip_threshold: float = 1.0,
    relative_step: bool = True,
) -> Rule:
    """Keras's Adafactor: factored second moments over the last two axes, step `min(lr, 1/sqrt(t)) * max(eps_2, rms(var))`.

    `relative_step` is accepted as in Keras, where the step size is
    `min(lr, 1/sqrt(t))` whichever it is.
    """
    del relative_step

    def init(p):
        if p.ndim < 2:
            return jnp.zeros((), p.dtype), jnp.zeros((), p.dtype), _zeros(p)
        return jnp.zeros(p.shape[:-1], p.dtype), jnp.zeros(p.shape[:-2] + p.shape[-1:], p.dtype), _zeros(p)

    def step(g, var, slots, lr, t, extra):
        r, c, v = slots
        one = _f(1.0, g.dtype)
        rho_t = jnp.minimum(lr, 1 / jnp.sqrt(t))
        alpha_t = jnp.maximum(_f(epsilon_2, g.dtype), _rms(var)) * rho_t
        regulated_grad_square = jnp.square(g) + epsilon_1
        beta_2_t = 1 - jnp.power(t, beta_2_decay)
        if var.ndim >= 2:
            r = beta_2_t * r + (1 - beta_2_t) * jnp.mean(regulated_grad_square, axis=-1)
            c = beta_2_t * c + (1 - beta_2_t) * jnp.mean(regulated_grad_square, axis=-2)
            v = jnp.expand_dims(r / jnp.mean(r, axis=-1, keepdims=True), -1) * jnp.expand_dims(c, -2)
        else:
            v = beta_2_t * v + (1 - beta_2_t) * regulated_grad_square
        u_t = g / jnp.sqrt(v)
        u_t_hat = u_t / jnp.maximum(one, _rms(u_t) / clip_threshold)
        return -(alpha_t * u_t_hat), (r, c, v)

    return Rule(("r", "c", "velocity"), init, step, needs_var=True)


def ftrl_rule(
    learning_rate_power: float = -0.5,
    initial_accumulator_value: float = 0.1,
    l1_regularization_strength: float = 0.0,
    l2_regularization_strength: float = 0.0,
    l2_shrinkage_regularization_strength: float = 0.0,
    beta: float = 0.0,
) -> Rule:
    """Keras's FTRL-proximal: the variable is recomputed from its linear and accumulator slots each step.

    Raises:
      ValueError: for a negative accumulator or regularization strength or a positive `learning_rate_power`, as Keras.
    """
    for name, value in (
        ("initial_accumulator_value", initial_accumulator_value),
        ("l1_regularization_strength", l1_regularization_strength),
        ("l2_regularization_strength", l2_regularization_strength),
        ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength),
    ):
        if value < 0.0:
            raise ValueError(f"Ftrl: `{name}` must be >= 0; got {value!r}")
    if learning_rate_power > 0.0:
        raise ValueError(f"Ftrl: `learning_rate_power` must be <= 0; got {learning_rate_power!r}")

    def step(g, var, slots, lr, t, extra):
        accum, linear = slots
        l2_reg = l2_regularization_strength + beta / (2.0 * lr)
        grad_to_use = g + 2 * l2_shrinkage_regularization_strength * var
        new_accum = accum + jnp.square(g)
        linear = linear + (
            grad_to_use - ((jnp.power(new_accum, -learning_rate_power) - jnp.power(accum, -learning_rate_power)) / lr) * var
        )
        quadratic = jnp.power(new_accum, -learning_rate_power) / lr + 2 * l2_reg
        linear_clipped = jnp.clip(linear, -l1_regularization_strength, l1_regularization_strength)
        new_var = (linear_clipped - linear) / quadratic
        return new_var - var, (new_accum, linear)

    return Rule(
        ("accumulator", "linear"), lambda p: (jnp.full_like(p, initial_accumulator_value), _zeros(p)), step, needs_var=True
    )


def lamb_rule(beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> Rule:
    """Keras's Lamb: the Adam direction scaled by the trust ratio `||var|| / ||update||` (1 where either is 0)."""

    def step(g, var, slots, lr, t, extra):
        m, v = slots
        beta_1_power = jnp.power(_f(beta_1, g.dtype), t)
        beta_2_power = jnp.power(_f(beta_2, g.dtype), t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (jnp.square(g) - v) * (1 - beta_2)
        m_t_hat = m / (1.0 - beta_1_power)
        v_sqrt = jnp.sqrt(v / (1.0 - beta_2_power)) + epsilon
        update = m_t_hat / v_sqrt
        w_norm = jnp.sqrt(jnp.sum(jnp.power(var, 2)))
        g_norm = jnp.sqrt(jnp.sum(jnp.power(update, 2)))
        ratio = jnp.where(w_norm > 0, jnp.where(g_norm > 0, w_norm / g_norm, 1.0), 1.0)
        return -(ratio * lr * update), (m, v)

    return Rule(("momentum", "velocity"), lambda p: (_zeros(p), _zeros(p)), step, needs_var=True)


def _path_name(path) -> str:
    return jax.tree_util.keystr(tuple(path), simple=True, separator="/")


def decay_mask(params, exclude_from_weight_decay: Sequence[str] | None) -> list[bool]:
    """For each leaf of `params` (in flattening order): True unless its path matches one of the regex patterns.

    Keras matches `var_names` against each variable's name with `re.search`;
    nnjax matches them against the parameter's '/'-joined path (e.g.
    "layers/0/bias/value"), which contains that name.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    if not exclude_from_weight_decay:
        return [True] * len(leaves)
    pattern = re.compile("|".join(set(exclude_from_weight_decay)))
    return [pattern.search(_path_name(path)) is None for path, _ in leaves]


def keras_transformation(
    rule: Rule,
    learning_rate: Any,
    weight_decay: float | None = None,
    exclude_from_weight_decay: Sequence[str] | None = None,
) -> optax.GradientTransformation:
    """Runs a Keras update rule over a parameter pytree.

    Args:
      rule: the per-variable update (e.g. `adam_rule()`).
      learning_rate: a scalar (a float or a traced array: this function is
        meant to be wrapped in `optax.inject_hyperparams`).
      weight_decay: Keras's decoupled decay: before the rule, each variable
        becomes `var - var * weight_decay * lr`. None: no decay.
      exclude_from_weight_decay: regex patterns; parameters whose path matches
        one are not decayed (Keras's `exclude_from_weight_decay(var_names=...)`).

    Returns:
      An `optax.GradientTransformation`; `update` needs `params` when the rule
      reads the variable or weight decay is on.
    """

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        per_leaf = [rule.init(jnp.asarray(p)) for p in leaves]
        slots = tuple(jax.tree.unflatten(treedef, [s[i] for s in per_leaf]) for i in range(len(rule.slots)))
        return KerasOptimizerState(jnp.zeros((), jnp.int32), jnp.ones((), jnp.float32), slots)

    def update_fn(updates, state, params=None):
        needs_params = rule.needs_var or weight_decay is not None
        if needs_params and params is None:
            raise ValueError(
                "optimizer: `update` needs the current params (this optimizer reads the weights or applies weight decay); "
                "call tx.update(grads, opt_state, params)"
            )
        grads, treedef = jax.tree.flatten(updates)
        slot_leaves = [treedef.flatten_up_to(s) for s in state.slots]
        var_leaves = treedef.flatten_up_to(params) if params is not None else [None] * len(grads)
        mask = decay_mask(params, exclude_from_weight_decay) if weight_decay is not None else [False] * len(grads)
        extra = state.extra
        if rule.advance is not None:
            extra = rule.advance(extra, (state.count + 1).astype(jnp.float32))
        new_updates, new_slots = [], []
        for i, g in enumerate(grads):
            var = var_leaves[i]
            dtype = var.dtype if var is not None else jnp.result_type(g)
            g = jnp.asarray(g).astype(dtype)
            lr = jnp.asarray(learning_rate).astype(dtype)
            t = (state.count + 1).astype(dtype)
            decayed = var
            if var is not None and mask[i]:
                decayed = var - var * jnp.asarray(weight_decay, dtype) * lr
            update, slots = rule.step(
                g, decayed if rule.needs_var or mask[i] else None, tuple(s[i] for s in slot_leaves), lr, t, extra
            )
            if decayed is not var:  # the rule's update is relative to the decayed variable
                update = (decayed + update) - var
            new_updates.append(update.astype(dtype))
            new_slots.append(slots)
        slots = tuple(jax.tree.unflatten(treedef, [s[j] for s in new_slots]) for j in range(len(rule.slots)))
        return jax.tree.unflatten(treedef, new_updates), KerasOptimizerState(state.count + 1, extra, slots)

    return optax.GradientTransformation(init_fn, update_fn)


def _map_grads(fn) -> optax.GradientTransformation:
    def update_fn(updates, state, params=None):
        del params
        return fn(updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_by_norm_keras(clipnorm: float) -> optax.GradientTransformation:
    """Keras's `clipnorm`: each gradient tensor becomes `g * clipnorm / max(||g||, clipnorm)`."""

    def clip(g):
        l2sum = jnp.sum(jnp.square(g), keepdims=True)
        pred = l2sum > 0
        l2norm = jnp.where(pred, jnp.sqrt(jnp.where(pred, l2sum, jnp.ones_like(l2sum))), l2sum)
        return (g * clipnorm) / jnp.maximum(l2norm, clipnorm)

    return _map_grads(lambda updates: jax.tree.map(clip, updates))


def clip_by_global_norm_keras(clipnorm: float) -> optax.GradientTransformation:
    """Keras's `global_clipnorm`: all gradients scaled by `clipnorm * min(1 / norm, 1 / clipnorm)` (NaN for a non-finite norm)."""

    def clip(updates):
        leaves = jax.tree.leaves(updates)
        norm = jnp.sqrt(jnp.sum(jnp.stack([jnp.sum(jnp.square(g)) for g in leaves])))
        scale = clipnorm * jnp.minimum(1.0 / norm, 1.0 / clipnorm)
        scale = scale + (norm - norm)
        return jax.tree.map(lambda g: g * scale, updates)

    return _map_grads(clip)


def clip_by_value_keras(clipvalue: float) -> optax.GradientTransformation:
    """Keras's `clipvalue`: each gradient element clipped to `[-clipvalue, clipvalue]`."""
    return _map_grads(lambda updates: jax.tree.map(lambda g: jnp.clip(g, -clipvalue, clipvalue), updates))
