"""Schedule-free optimizers (`optax.contrib.schedule_free_*`): evaluate on the evaluation parameters."""

from __future__ import annotations

import jax
import optax


def _schedule_free_state(opt_state):
    is_state = lambda node: isinstance(node, optax.contrib.ScheduleFreeState)  # noqa: E731
    found = [node for node in jax.tree.leaves(opt_state, is_leaf=is_state) if is_state(node)]
    return found[0] if len(found) == 1 else None


def eval_state(state):
    """`state` with the parameters `optax.contrib.schedule_free_eval_params` gives, when its optimizer is
    schedule-free (the training parameters `y` are not the ones to evaluate); `state` itself otherwise."""
    sf_state = _schedule_free_state(getattr(state, "opt_state", None))
    if sf_state is None or jax.numpy.ndim(state.step) != 0:  # stacked ensemble members are not handled here
        return state
    return state.replace(params=optax.contrib.schedule_free_eval_params(sf_state, state.params))


__all__ = ["eval_state"]
