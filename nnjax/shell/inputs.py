"""What `fit`, `evaluate` and `predict` accept, turned into batch sources and checked before compiling."""

from __future__ import annotations

import warnings

from nnjax.callbacks.base import Callback
from nnjax.data.adapt import adapt, is_source, is_streaming
from nnjax.data.arrays import as_array_tree, check_lengths, split_validation
from nnjax.data.generators import OUT_OF_DATA, GeneratorSource
from nnjax.train.losses import class_weight_to_sample_weight


def source_for(x, y, sample_weight, *, batch_size, shuffle: bool, seed: int, what: str, drop_remainder: bool = False):
    """A `BatchSource` for what the user passed (arrays, a dataset, a generator, TFDS, Grain).

    Raises:
      ValueError: naming `what` ("fit", "evaluate", ...) and the argument at fault.
    """
    if x is None:
        raise ValueError(f"{what}: `x` is required; got None")
    try:
        return adapt(x, y, sample_weight=sample_weight, batch_size=batch_size, shuffle=shuffle, seed=seed,
                               drop_remainder=drop_remainder)
    except ValueError as err:
        raise ValueError(f"{what}: {err}") from err


def fit_sources(x, y, sample_weight, *, batch_size, shuffle, seed, validation_split, validation_data, validation_batch_size,
                class_weight=None):
    """The training source and the validation source (or None) of a `fit` call, Keras's rules included:
    `validation_data` wins over `validation_split`; the split takes the last fraction of the arrays, before shuffling;
    `class_weight` becomes the training examples' sample weights (never the validation's)."""
    if validation_split and validation_data is not None:
        validation_split = 0.0
    if validation_split:
        if is_streaming(x):
            raise ValueError("fit: `validation_split` needs array inputs; with a dataset pass validation_data")
        x, y, sample_weight = (as_array_tree(v, n) for v, n in ((x, "x"), (y, "y"), (sample_weight, "sample_weight")))
        check_lengths(x, y, sample_weight)
        (x, y, sample_weight), validation_data = split_validation(x, y, sample_weight, validation_split)
    if class_weight is not None:
        if is_streaming(x) or y is None:
            raise ValueError("fit: `class_weight` needs array labels `y` (got a dataset or generator); yield "
                             "(x, y, sample_weight) batches with the class weights instead")
        sample_weight = class_weight_to_sample_weight(as_array_tree(y, "y"), class_weight, sample_weight)
    source = source_for(x, y, sample_weight, batch_size=batch_size, shuffle=shuffle, seed=seed, what="fit")
    if validation_data is None:
        return source, None
    if is_source(validation_data):
        return source, validation_data
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(
            "fit: `validation_data` must be (x_val, y_val), (x_val, y_val, sample_weight) or a dataset; "
            f"got {type(validation_data).__name__}"
        )
    vx, vy, *vw = validation_data
    val_source = source_for(vx, vy, vw[0] if vw else None, batch_size=validation_batch_size or batch_size, shuffle=False,
                            seed=seed, what="fit(validation_data)")
    return source, val_source


def stop_when_exhausted(source, epochs: int):
    """A callback that, as Keras, warns and stops `fit` once a one-pass generator has run out of batches.

    Returns:
      An `nj.callbacks.Callback` for `fit`'s callback list, or None when `source` is not a one-pass
      `GeneratorSource` (anything else restarts every epoch).
    """
    if not isinstance(source, GeneratorSource) or source.restartable:
        return None
    class StopWhenExhausted(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if source.exhausted and epoch + 1 < epochs:
                warnings.warn(f"fit: {OUT_OF_DATA} The generator is a one-pass stream: pass a generator function "
                              "(called afresh every epoch) to train for several epochs.", UserWarning, stacklevel=2)
                self.model.stop_training = True

    return StopWhenExhausted()



__all__ = ["fit_sources", "source_for", "stop_when_exhausted"]
