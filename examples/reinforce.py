"""REINFORCE on CartPole, written in JAX, trained through nnjax's functional core.

Reinforcement learning with a loop that `fit` does not know. CartPole's
dynamics (the classic Barto-Sutton-Anderson equations, as in Gymnasium's
CartPole) are a pure function below; `jax.vmap` runs `--num-envs` of them in
parallel and `jax.lax.scan` steps them for a whole episode. The policy is an
NNX module of nnjax `Dense` layers held in a `TrainState`; it acts through
`nj.train.predict_step`, and the policy-gradient loss is a user `loss_fn`
given to `nj.train.train_step` (batch = observations, actions, advantages,
mask). One update (rollout, returns, gradient step) is one jit-compiled pure
function, and `--updates-per-call` of them run in one `lax.scan`.

    python examples/reinforce.py                     # 100 updates of 32 episodes of up to 500 steps
    python examples/reinforce.py --updates 60 --num-envs 16 --max-steps 200   # the size CI runs
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import nnjax as nj

# -- the environment ----------------------------------------------------------------------------


class CartPole(NamedTuple):
    """Physical constants of CartPole (Gymnasium's values); one episode lasts at most `max_steps`."""

    gravity: float = 9.8
    cart_mass: float = 1.0
    pole_mass: float = 0.1
    pole_half_length: float = 0.5
    force: float = 10.0
    dt: float = 0.02
    max_angle: float = 12 * 2 * jnp.pi / 360  # radians; beyond it the episode ends
    max_position: float = 2.4
    max_steps: int = 500  # Gymnasium's CartPole-v1 limit (v0 had 200)


def cartpole_reset(key: jax.Array) -> jax.Array:
    """A start state `(4,)` = (x, x_dot, theta, theta_dot), each uniform in [-0.05, 0.05]."""
    return jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)


def cartpole_step(env: CartPole, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One Euler step of 0.02 s. `obs` (4,), `action` int32 scalar (0 = push left, 1 = push right).

    Returns:
      `(next_obs (4,), terminated bool scalar)`: terminated once the pole leans past
      `max_angle` or the cart leaves [-max_position, max_position].
    """
    x, x_dot, theta, theta_dot = obs
    total_mass = env.cart_mass + env.pole_mass
    pole_moment = env.pole_mass * env.pole_half_length
    force = jnp.where(action == 1, env.force, -env.force)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + pole_moment * theta_dot**2 * sin) / total_mass
    theta_acc = (env.gravity * sin - cos * temp) / (env.pole_half_length * (4.0 / 3.0 - env.pole_mass * cos**2 / total_mass))
    x_acc = temp - pole_moment * theta_acc * cos / total_mass
    next_obs = jnp.stack([x + env.dt * x_dot, x_dot + env.dt * x_acc, theta + env.dt * theta_dot, theta_dot + env.dt * theta_acc])
    terminated = (jnp.abs(next_obs[0]) > env.max_position) | (jnp.abs(next_obs[2]) > env.max_angle)
    return next_obs, terminated


# -- the agent ----------------------------------------------------------------------------------


class Policy(nnx.Module):
    """An MLP from observations `(batch, 4)` to action logits `(batch, 2)`."""

    def __init__(self, hidden: int, *, key: jax.Array):
        hidden_key, out_key = jax.random.split(key)
        self.hidden = nj.layers.Dense(hidden, activation="tanh", key=hidden_key)
        self.logits = nj.layers.Dense(2, key=out_key)

    def __call__(self, obs: jax.Array) -> jax.Array:
        return self.logits(self.hidden(obs))


def policy_gradient_loss(logits: jax.Array, batch: dict, *, entropy_coef: float = 0.0) -> tuple[jax.Array, dict]:
    """REINFORCE: `-mean(log pi(a|s) * advantage)` over the live steps, minus an entropy bonus.

    Args:
      logits: `(steps, 2)` policy outputs for `batch["x"]`.
      batch: `{"x": (steps, 4), "action": int32 (steps,), "advantage": (steps,), "mask": (steps,)}`;
        mask is 1.0 for steps taken before the episode ended, 0.0 after.
      entropy_coef: weight of the entropy bonus.

    Returns:
      `(loss, {"entropy": mean policy entropy})`.
    """
    log_probs = jax.nn.log_softmax(logits)
    taken = jnp.take_along_axis(log_probs, batch["action"][:, None], axis=-1)[:, 0]
    mask = batch["mask"]
    count = jnp.maximum(mask.sum(), 1.0)
    entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
    entropy = jnp.sum(entropy * mask) / count
    loss = -jnp.sum(taken * jax.lax.stop_gradient(batch["advantage"]) * mask) / count - entropy_coef * entropy
    return loss, {"entropy": entropy}


def rollout(state: nj.train.TrainState, env: CartPole, key: jax.Array, num_envs: int) -> dict[str, jax.Array]:
    """Plays one episode in each of `num_envs` environments with the current policy.

    Returns:
      Time-major arrays over `env.max_steps` steps: "obs" (T, N, 4), "action" int32 (T, N),
      "mask" (T, N) (1.0 while the episode is running; the reward of each such step is 1).
    """
    reset_key, act_key = jax.random.split(key)
    obs = jax.vmap(cartpole_reset)(jax.random.split(reset_key, num_envs))
    step_env = jax.vmap(cartpole_step, in_axes=(None, 0, 0))

    def one_step(carry, step_key):
        obs, alive = carry
        logits = nj.train.predict_step(state, obs)
        action = jax.random.categorical(step_key, logits).astype(jnp.int32)
        next_obs, terminated = step_env(env, obs, action)
        record = {"obs": obs, "action": action, "mask": alive.astype(jnp.float32)}
        return (next_obs, alive & ~terminated), record

    alive = jnp.ones((num_envs,), bool)
    _, trajectory = jax.lax.scan(one_step, (obs, alive), jax.random.split(act_key, env.max_steps))
    return trajectory


def advantages(mask: jax.Array, gamma: float) -> jax.Array:
    """Normalised returns-to-go minus a per-time-step baseline.

    Args:
      mask: `(T, N)` 1.0 on live steps (reward 1 each), 0.0 after the episode ended.
      gamma: discount.

    Returns:
      `(T, N)` float32: `G_t` (discounted reward-to-go), minus the mean `G_t` of the live
      episodes at step t, divided by the standard deviation over all live steps.
    """

    def back(future, reward):
        value = reward + gamma * future
        return value, value

    _, returns = jax.lax.scan(back, jnp.zeros(mask.shape[1]), mask, reverse=True)
    live = jnp.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    centred = (returns - (returns * mask).sum(axis=1, keepdims=True) / live) * mask
    std = jnp.sqrt((centred**2).sum() / jnp.maximum(mask.sum(), 1.0))
    return centred / (std + 1e-8)


def make_train(env: CartPole, num_envs: int, gamma: float, updates_per_call: int):
    """`train(state, key) -> (state, metrics)`: `updates_per_call` updates, one jit-compiled function."""

    def update(state: nj.train.TrainState, key: jax.Array):
        trajectory = rollout(state, env, key, num_envs)
        flat = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731 - (T, N, ...) -> (T * N, ...)
        batch = {
            "x": flat(trajectory["obs"]),
            "action": flat(trajectory["action"]),
            "advantage": flat(advantages(trajectory["mask"], gamma)),
            "mask": flat(trajectory["mask"]),
        }
        state, metrics = nj.train.train_step(state, batch)
        metrics["average_return"] = trajectory["mask"].sum(axis=0).mean()
        return state, metrics

    @jax.jit
    def train(state: nj.train.TrainState, key: jax.Array):
        return jax.lax.scan(update, state, jax.random.split(key, updates_per_call))

    return train


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=100, help="policy updates (one batch of episodes each)")
    parser.add_argument("--updates-per-call", type=int, default=10, help="updates run in one jit call (lax.scan)")
    parser.add_argument("--num-envs", type=int, default=32, help="parallel environments (episodes per update)")
    parser.add_argument("--max-steps", type=int, default=500, help="episode length limit (the maximum return)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--entropy-coef", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Trains the agent; returns {"average_returns": per-update mean episode return, "final_average_return",
    "updates", "seconds"}. The final figure is the mean over the last `updates_per_call` updates."""
    args = parse_args(argv)
    if args.updates % args.updates_per_call:
        raise ValueError(f"--updates ({args.updates}) must be a multiple of --updates-per-call ({args.updates_per_call})")
    env = CartPole(max_steps=args.max_steps)
    init_key, state_key, train_key = jax.random.split(jax.random.key(args.seed), 3)
    policy = Policy(args.hidden, key=init_key)
    policy(jnp.zeros((1, 4)))  # builds the Dense layers
    state = nj.train.TrainState.create(
        policy,
        optax.adam(args.learning_rate),
        loss_fn=lambda logits, batch: policy_gradient_loss(logits, batch, entropy_coef=args.entropy_coef),
        key=state_key,
    )
    train = make_train(env, args.num_envs, args.gamma, args.updates_per_call)

    returns: list[float] = []
    start = time.perf_counter()
    for call in range(args.updates // args.updates_per_call):
        state, metrics = train(state, jax.random.fold_in(train_key, call))
        returns.extend(float(r) for r in metrics["average_return"])
        print(
            f"update {len(returns)}/{args.updates}: average return {returns[-1]:.1f} "
            f"(loss {float(metrics['loss'][-1]):.3f}, entropy {float(metrics['entropy'][-1]):.3f}, "
            f"{time.perf_counter() - start:.1f}s)"
        )
    final = sum(returns[-args.updates_per_call :]) / args.updates_per_call
    print(f"final average return {final:.1f} of at most {args.max_steps}")
    return {
        "average_returns": returns,
        "final_average_return": final,
        "updates": args.updates,
        "seconds": time.perf_counter() - start,
    }


if __name__ == "__main__":
    main()
