"""Keras's `Metric` base class: metric objects with variables, eager and stateless (jit-friendly).

A metric object keeps its running state in `MetricVariable`s created by
`add_variable`, and users subclass it as in Keras 3:

    class BinaryTruePositives(nj.metrics.Metric):
        def __init__(self, name="binary_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), initializer="zeros", name="true_positives")

        def update_state(self, y_true, y_pred, sample_weight=None):
            values = jnp.logical_and(y_true.astype(bool), y_pred.astype(bool)).astype(self.dtype)
            self.true_positives.assign_add(jnp.sum(values))

        def result(self):
            return self.true_positives.value

Eagerly, `update_state` changes the variables in place. Under `jax.jit` the
stateless forms apply (Keras 3's JAX API): inside a `StatelessScope` every read
of a variable returns the value the scope maps it to and every assignment is
recorded in the scope, so nothing global changes while JAX traces:

    values = [v.value for v in metric.variables]
    values = jax.jit(metric.stateless_update_state)(values, y_true, y_pred)
    value = metric.stateless_result(values)
"""

from __future__ import annotations

import re
import threading
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nnjax import initializers as initializers_lib

_local = threading.local()
_name_counts: dict[str, int] = {}
_AGGREGATIONS = ("none", "mean", "sum", "only_first_replica")


def _scopes() -> list:
    return _local.__dict__.setdefault("scopes", [])


class StatelessScope:
    """Where metric variables are read from and assigned to while it is open (Keras's `StatelessScope`).

    Args:
      state_mapping: `(variable, value)` pairs: reads of `variable` inside the scope return `value`.

    Example:
      >>> m = nj.metrics.Sum()
      >>> with nj.metrics.StatelessScope([(m.variables[0], jnp.array(5.0))]) as scope:
      ...     m.update_state(2.0)
      >>> float(scope.get_current_value(m.variables[0])), float(m.result())
      (7.0, 0.0)
    """

    def __init__(self, state_mapping=None):
        self._values: dict[int, Any] = {}
        self._variables: dict[int, MetricVariable] = {}
        for variable, value in state_mapping or ():
            if not isinstance(variable, MetricVariable):
                raise TypeError(
                    f"StatelessScope: state_mapping must pair metric variables with values; received "
                    f"{type(variable).__name__} {variable!r}"
                )
            self._set(variable, variable._cast(value, "StatelessScope"))

    def _set(self, variable: MetricVariable, value) -> None:
        self._values[id(variable)] = value
        self._variables[id(variable)] = variable

    def get_current_value(self, variable: MetricVariable):
        """The value `variable` holds in this scope (mapped or assigned here), or None."""
        return self._values.get(id(variable))

    def __enter__(self) -> StatelessScope:
        _scopes().append(self)
        return self

    def __exit__(self, *exc) -> None:
        _scopes().remove(self)


def in_stateless_scope() -> bool:
    """Whether a `StatelessScope` is open in this thread."""
    return bool(_scopes())


def _is_traced(value) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def _dtype_name(dtype) -> str:
    if dtype is None:
        return "float32"
    if isinstance(dtype, str) and dtype.startswith("mixed_"):  # a Keras policy name: its compute dtype
        return dtype[len("mixed_") :]
    name = getattr(dtype, "compute_dtype", None)  # a Keras DTypePolicy
    return jnp.dtype(name or dtype).name


class MetricVariable:
    """A metric's state variable (Keras's `Variable` as `Metric.add_variable` makes it; not trainable).

    `value` is the current value: inside a `StatelessScope`, the scope's; else the stored one. It
    works where an array does (`jnp` functions, arithmetic, `np.asarray`), and is a pytree whose one
    leaf is its value.

    Attributes:
      name: the variable's name; `path` is "<metric name>/<name>".
      shape, dtype: fixed at creation; assignments are cast to `dtype` and must have `shape`.
      aggregation: Keras's cross-replica rule ("sum", "mean", "only_first_replica" or "none").
    """

    trainable = False

    def __init__(self, value, *, name: str, aggregation: str = "sum", owner: str = ""):
        self._value = value
        self.name = name
        self.aggregation = aggregation
        self.path = f"{owner}/{name}" if owner else name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._value.shape)

    @property
    def dtype(self) -> str:
        return jnp.dtype(self._value.dtype).name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def value(self):
        for scope in reversed(_scopes()):
            found = scope.get_current_value(self)
            if found is not None:
                return found
        return self._value

    def _cast(self, value, what: str):
        if isinstance(value, MetricVariable):
            value = value.value
        value = jnp.asarray(value, self._value.dtype)
        if value.shape != self._value.shape:
            raise ValueError(
                f'{what}: variable "{self.path}" has shape {self.shape}; received a value of shape {tuple(value.shape)}'
            )
        return value

    def assign(self, value):
        """Sets the value (cast to the variable's dtype; same shape), in the open `StatelessScope` if there is one.

        Raises:
          ValueError: for a value of another shape.
          RuntimeError: for a traced value outside a `StatelessScope` (it would leak out of `jax.jit`).
        """
        value = self._cast(value, "assign")
        scopes = _scopes()
        if scopes:
            scopes[-1]._set(self, value)
        elif _is_traced(value):
            raise RuntimeError(
                f'variable "{self.path}": assigned a traced value (inside jax.jit, grad or vmap) outside a stateless '
                "scope, which would leak the tracer into the metric. Under a JAX transformation use "
                "metric.stateless_update_state(values, ...) (values = [v.value for v in metric.variables]) and "
                "metric.stateless_result(values)"
            )
        else:
            self._value = value
        return self

    def assign_add(self, delta):
        """`variable += delta`."""
        return self.assign(self.value + jnp.asarray(delta.value if isinstance(delta, MetricVariable) else delta))

    def assign_sub(self, delta):
        """`variable -= delta`."""
        return self.assign(self.value - jnp.asarray(delta.value if isinstance(delta, MetricVariable) else delta))

    def numpy(self) -> np.ndarray:
        """A host copy of the value."""
        return np.asarray(self.value)

    def __array__(self, dtype=None, copy=None):
        del copy
        return np.asarray(self.value, dtype=dtype)

    def __jax_array__(self):
        return self.value

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)

    def __bool__(self):
        return bool(self.value)

    def __len__(self):
        return len(self.value)

    def __getitem__(self, index):
        return self.value[index]

    def __repr__(self):
        return f"<MetricVariable path={self.path}, shape={self.shape}, dtype={self.dtype}, value={np.asarray(self.value)}>"


def _operator(name: str, reflected: bool = False):
    fn = getattr(jnp, name)

    def method(self, other):
        other = other.value if isinstance(other, MetricVariable) else other
        return fn(other, self.value) if reflected else fn(self.value, other)

    return method


for _name, _fn in {
    "add": "add",
    "sub": "subtract",
    "mul": "multiply",
    "truediv": "true_divide",
    "floordiv": "floor_divide",
    "mod": "mod",
    "pow": "power",
    "matmul": "matmul",
}.items():
    setattr(MetricVariable, f"__{_name}__", _operator(_fn))
    setattr(MetricVariable, f"__r{_name}__", _operator(_fn, reflected=True))
for _name in ("lt", "le", "gt", "ge"):
    setattr(
        MetricVariable,
        f"__{_name}__",
        _operator({"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal"}[_name]),
    )
MetricVariable.__neg__ = lambda self: -self.value
MetricVariable.__abs__ = lambda self: jnp.abs(self.value)


def _flatten(variable):
    return (variable.value,), (variable.name, variable.aggregation, variable.path)


def _unflatten(aux, children):
    variable = MetricVariable.__new__(MetricVariable)
    variable._value, (variable.name, variable.aggregation, variable.path) = children[0], aux
    return variable


jax.tree_util.register_pytree_node(MetricVariable, _flatten, _unflatten)


def _to_snake_case(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _auto_name(class_name: str) -> str:
    """Keras's default name: the class name in snake case, numbered "_1", "_2", ... after its first use."""
    base = _to_snake_case(class_name)
    count = _name_counts.get(base, 0)
    _name_counts[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def _tracer_error(metric, err: Exception) -> TypeError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return TypeError(
        f"metric {metric.name!r} ({type(metric).__name__}): update_state cannot be traced by jax.jit (compile and "
        f"the stateless API run it on traced arrays); {type(err).__name__}: {first}. Write update_state with jnp / "
        "nj.ops operations on its arguments and variables (self.v.assign_add(jnp.sum(x))); Python float(), int(), "
        "bool(), `if` on array values, .item() and np.asarray() of them need concrete values and cannot be traced"
    )


_TRACER_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
)


class Metric:
    """Keras's metric base class: state in variables, `update_state`, `result`, `reset_state` (eager) and the
    stateless forms of each (`jax.jit`-friendly).

    Subclasses create their variables in `__init__` with `add_variable`, and implement `update_state`
    and `result`. A metric assigned to an attribute is tracked: its variables follow this metric's
    in `variables`.

    Args:
      name: the name it is logged under; default: the class name in snake case.
      dtype: the dtype of its computations (default float32).

    Example:
      >>> m = nj.metrics.Mean()
      >>> m.update_state([1.0, 2.0, 3.0])
      >>> float(m.result())
      2.0
    """

    def __init__(self, dtype=None, name: str | None = None):
        object.__setattr__(self, "_variables", [])
        object.__setattr__(self, "_metrics", [])
        self.name = name or _auto_name(type(self).__name__)
        self._dtype = _dtype_name(dtype)

    def __setattr__(self, name, value):
        if isinstance(value, Metric) and "_metrics" in self.__dict__ and value not in self._metrics:
            self._metrics.append(value)
        object.__setattr__(self, name, value)

    def _check_super_called(self) -> None:
        if "_variables" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: you forgot to call `super().__init__()` in the `__init__()` method of the metric"
            )

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def variables(self) -> list[MetricVariable]:
        """This metric's variables, in creation order, then those of the metrics it tracks."""
        self._check_super_called()
        found = list(self._variables)
        for metric in self._metrics:
            found.extend(metric.variables)
        return found

    def add_variable(self, shape, initializer, dtype=None, aggregation: str = "sum", name: str | None = None):
        """A new state variable (Keras's `Metric.add_variable`).

        Args:
          shape: the variable's shape, e.g. `()` or `(num_classes,)`.
          initializer: an initializer name ("zeros") or `fn(key, shape, dtype) -> array`.
          dtype: its dtype (default: the metric's).
          aggregation: "sum" (default), "mean", "only_first_replica" or "none" (recorded, as Keras).
          name: its name.

        Returns:
          A `MetricVariable`.

        Raises:
          ValueError: for an unknown aggregation or initializer.
        """
        self._check_super_called()
        if aggregation not in _AGGREGATIONS:
            raise ValueError(f"add_variable: `aggregation` must be one of {list(_AGGREGATIONS)}; received {aggregation!r}")
        shape = tuple(int(d) for d in np.atleast_1d(shape)) if np.ndim(shape) else (() if shape in ((), None) else (int(shape),))
        dtype = _dtype_name(dtype or self.dtype)
        init = initializers_lib.get(
            "zeros" if initializer is None else initializer, where=f"{self.name}.add_variable(initializer=...)"
        )
        with jax.ensure_compile_time_eval():  # a concrete value, even when a metric builds itself under a trace
            value = jnp.asarray(init(jax.random.key(0), shape, jnp.dtype(dtype)), dtype)
        variable = MetricVariable(
            value, name=name or f"variable_{len(self._variables)}", aggregation=aggregation, owner=self.name
        )
        self._variables.append(variable)
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name: str | None = None):
        """Keras's alias of `add_variable`."""
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    def update_state(self, *args, **kwargs):
        """Accumulates statistics of a batch into the variables."""
        raise NotImplementedError(f"{type(self).__name__}: a Metric subclass must implement update_state(...)")

    def result(self):
        """The metric's value from its variables."""
        raise NotImplementedError(f"{type(self).__name__}: a Metric subclass must implement result()")

    def reset_state(self) -> None:
        """Sets every variable to zeros (Keras's rule)."""
        for variable in self.variables:
            variable.assign(jnp.zeros(variable.shape, variable.dtype))

    def __call__(self, *args, **kwargs):
        """`update_state(*args, **kwargs)`, then `result()`."""
        self._check_super_called()
        self.update_state(*args, **kwargs)
        return self.result()

    def _mapping(self, metric_variables, what: str) -> list:
        variables = self.variables
        metric_variables = list(metric_variables)
        if len(metric_variables) != len(variables):
            raise ValueError(
                f"{self.name}.{what}: `metric_variables` must be a list of values corresponding 1:1 to "
                f"{type(self).__name__}().variables ({len(variables)}: {[v.name for v in variables]}); "
                f"received a list of length {len(metric_variables)}"
            )
        return list(zip(variables, metric_variables))

    def stateless_update_state(self, metric_variables, *args, **kwargs) -> list:
        """`update_state` without side effects: the new values of `variables`, from `metric_variables`.

        Args:
          metric_variables: one value per entry of `variables` (arrays or traced arrays).
          *args, **kwargs: what `update_state` takes (`y_true, y_pred, sample_weight=None` for most metrics).

        Returns:
          A list of new values, one per variable.

        Raises:
          ValueError: when `metric_variables` does not have one value per variable.
          TypeError: when `update_state` cannot be traced (it needs concrete values).
        """
        with StatelessScope(self._mapping(metric_variables, "stateless_update_state")) as scope:
            try:
                self.update_state(*args, **kwargs)
            except _TRACER_ERRORS as err:
                raise _tracer_error(self, err) from err
        return [scope.get_current_value(v) for v in self.variables]

    def stateless_result(self, metric_variables):
        """`result()` computed from `metric_variables` (one value per variable)."""
        with StatelessScope(self._mapping(metric_variables, "stateless_result")):
            return self.result()

    def stateless_reset_state(self) -> list:
        """The values `reset_state` would set, without setting them."""
        with StatelessScope() as scope:
            self.reset_state()
        return [scope.get_current_value(v) if scope.get_current_value(v) is not None else v.value for v in self.variables]

    def get_config(self) -> dict:
        """The constructor arguments that rebuild this metric (Keras's: `name` and `dtype`)."""
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config: dict):
        """The metric `get_config` describes."""
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

    __str__ = __repr__


__all__ = ["Metric", "MetricVariable", "StatelessScope", "in_stateless_scope"]
