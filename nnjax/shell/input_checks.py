"""How a model turns what `fit`/`evaluate`/`predict` were given into a checked source, before compiling.

Every value of in-memory data is checked once per dataset, every streamed batch as it arrives
(`nnjax.data.validate`), labels against the loss and the model's output (`nnjax.shell.checks`).
"""

from __future__ import annotations

import jax

from nnjax.data import validate
from nnjax.layers.base import Layer, shape_str
from nnjax.layers.sequential import SequentialModule
from nnjax.shell import checks, inputs
from nnjax.utils.random import next_seed


class InputChecks:
    """The data side of `Model`: the data seed, sources and their host checks."""

    def _seed_for_data(self) -> int:
        if self._compiled is not None:
            return self._compiled.seed
        if self._data_seed is None:
            self._data_seed = next_seed()
        return self._data_seed

    def _source(self, x, y, sample_weight, batch_size, shuffle, what: str):
        return inputs.source_for(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle, seed=self._seed_for_data(),
                                 what=what)

    def _check_source(self, source, what: str) -> None:
        """Builds the model if needed and checks inputs and labels, all before compiling."""
        batch_size = getattr(source, "batch_size", None)
        if self.distribution is not None and hasattr(self.distribution, "check_batch_size") and isinstance(batch_size, int):
            self.distribution.check_batch_size(batch_size, what)  # e.g. a batch that the devices cannot split evenly
        sample = source.peek()
        if isinstance(sample[0], dict) and isinstance(self._module, SequentialModule):
            raise ValueError(
                f'{what}: model "{self.name}" (a Sequential) takes one input array; received a dict of inputs with keys '
                f"{sorted(sample[0])}. Pass the array itself, or build a functional model with one nj.Input per key"
            )
        policy = self._compiled is not None and self._compiled.nonfinite is not None  # it handles NaN/inf per step
        x, y, weights = source.arrays if hasattr(source, "arrays") else sample  # in-memory: every value, once per dataset
        validate.check_values(x, None, weights, where=what, remember=hasattr(source, "arrays") and not policy,
                              nonfinite_ok=policy)
        self._ensure_built(sample[0])
        expected = self._input_spec[0]
        leaves = jax.tree.leaves(sample[0])
        if expected is not None and len(leaves) == 1:
            got = tuple(leaves[0].shape)
            if len(got) != len(expected) or any(e is not None and e != g for e, g in zip(expected[1:], got[1:])):
                raise ValueError(
                    f'{what}: input of model "{self.name}" is incompatible: expected shape {shape_str(expected)}, '
                    f"received input with shape {shape_str((None,) + got[1:])}"
                )
        if isinstance(self._module, Layer):
            self._module.check_host_inputs(source.x if hasattr(source, "arrays") else sample[0])
        spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), sample[0])
        out = checks.output_spec(self._inference_state(), spec)
        self._last_output_spec = out
        if hasattr(out, "shape"):
            self._output_shape = (None,) + tuple(out.shape[1:])
        if self._compiled is not None and sample[1] is not None:
            checks.check_labels(y, self._output_shape, self._compiled.loss, what)  # labels first: the clearer message
            checks.check_output_labels(y, out, self._compiled, what)
        validate.check_values(None, y, where=what, remember=hasattr(source, "arrays") and not policy, nonfinite_ok=policy)

    def _check_batch(self, batch, where: str) -> None:
        """Checks one streamed batch on the host (values, labels) before it is trained or evaluated on."""
        if self._compiled is not None and batch[1] is not None:
            checks.check_labels(batch[1], self._output_shape, self._compiled.loss, where)
            checks.check_output_labels(batch[1], getattr(self, "_last_output_spec", None), self._compiled, where)
        validate.check_values(*batch, where=where, nonfinite_ok=self._compiled is not None and self._compiled.nonfinite is not None)


__all__ = ["InputChecks"]
