"""Small argument checks shared by the layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def cast_like(w, x):
    """Casts a parameter to the input's floating dtype, so bfloat16 in gives bfloat16 out."""
    return w.astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else w


def normalize_tuple(value, n: int, arg: str, where: str) -> tuple[int, ...]:
    """`3 -> (3, 3)` for `n=2`; checks every entry is a positive int.

    Raises:
      ValueError: naming `where` and `arg`, the expected form and the received value.
    """
    values = (value,) * n if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if values is None or len(values) != n or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ValueError(f"{where}: `{arg}` must be a positive int or a tuple of {n} positive ints; got {value!r}")
    return tuple(int(v) for v in values)


def check_choice(value, choices: tuple[str, ...], arg: str, where: str) -> str:
    """Lower-cases a string argument and checks it is one of `choices`.

    Raises:
      ValueError: listing the valid choices and the received value.
    """
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    expected = " or ".join(repr(c) for c in choices)
    raise ValueError(f"{where}: `{arg}` must be {expected}; got {value!r}")


def check_data_format(data_format, where: str) -> str:
    return check_choice("channels_last" if data_format is None else data_format, ("channels_last", "channels_first"),
                        "data_format", where)


def is_concrete(x) -> bool:
    """True for arrays whose values are available on the host now (not inside `jit`/`vmap`/`grad`)."""
    return not isinstance(x, jax.core.Tracer)


def is_prng_key(value) -> bool:
    """True for a typed key (`jax.random.key`) or a raw `uint32[2]` key (`jax.random.PRNGKey`)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return tuple(getattr(value, "shape", ())) == (2,) and dtype == jnp.uint32


__all__ = ["cast_like", "is_prng_key", "check_choice", "check_data_format", "is_concrete", "normalize_tuple"]
