"""`TensorBoard`: scalar logs per epoch and every N steps, written without TensorFlow."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from nnjax.callbacks.base import Callback
from nnjax.callbacks.event_file import EventFileWriter, histogram_value, image_value, new_file_name


class TensorBoard(Callback):
    """Writes training curves for TensorBoard, laid out as Keras does.

    `log_dir/train` gets "epoch_loss", "epoch_<metric>", "epoch_learning_rate"
    (step = epoch index) and, with `update_freq`, "batch_loss", "batch_<metric>"
    (step = training step, the running means of the epoch so far);
    `log_dir/validation` gets the "val_" values under the same "epoch_" tags, so
    TensorBoard draws training and validation on one chart.

    Args:
      log_dir: the folder to write to (`tensorboard --logdir log_dir`).
      update_freq: "epoch" (only per-epoch scalars), "batch" (every step) or an
        int N (every N steps; with `steps_per_execution`, at the first execution
        that reaches it). Each batch write costs a host sync.
      write_steps_per_second: also log "epoch_steps_per_second".
      histogram_freq: every N epochs, a histogram of each weight under "<path>/histogram"
        (30 equal-width buckets, as `tf.summary.histogram`; step = epoch), as Keras's.
      write_images: with `histogram_freq`, each 1-D or 2-D weight as a grayscale image under
        "<path>/image" (scaled from its min to its max; Keras clips to [0, 1] instead).
      hparams: an nnjax extension: `{name: value}` written once for TensorBoard's HParams
        dashboard (needs the `tensorboard` package, which provides the plugin's format).
      write_graph, profile_batch, embeddings_freq: Keras arguments; only their "off" values are
        accepted (write_graph's default is accepted and writes nothing).

    "epoch_learning_rate" is written at every epoch, as Keras does (the optimizer's current rate).

    Resumed through `BackupAndRestore`, the step counter continues from the
    backup's step and each run's event file is continued, cut back to what it held
    at the backup (the events of the steps trained again are written again), so
    every step appears once.

    Raises:
      ValueError: for a bad `update_freq` or a feature that is switched on but not written.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike = "logs",
        histogram_freq: int = 0,
        write_graph: bool = True,
        write_images: bool = False,
        write_steps_per_second: bool = False,
        update_freq="epoch",
        profile_batch=0,
        embeddings_freq: int = 0,
        hparams: dict | None = None,
    ):
        super().__init__()
        del write_graph  # the graph is not written; accepted because it is on by default in Keras
        for name, value in (("profile_batch", profile_batch), ("embeddings_freq", embeddings_freq)):
            if value:
                raise ValueError(f"TensorBoard: `{name}` is not supported (nnjax writes scalars, histograms, images and "
                                 f"hparams); got {value!r}")
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"TensorBoard: `histogram_freq` must be a non-negative int; got {histogram_freq!r}")
        if write_images and not histogram_freq:
            raise ValueError("TensorBoard: `write_images` writes the weights at each histogram epoch; set `histogram_freq` "
                             "(e.g. histogram_freq=1) as well")
        if hparams is not None and not isinstance(hparams, dict):
            raise ValueError(f"TensorBoard: `hparams` must be a dict of name -> value; got {type(hparams).__name__}")
        self._hparams_summary = _hparams_summary(hparams) if hparams else None
        self.histogram_freq = histogram_freq
        self.write_images = bool(write_images)
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1):
            raise ValueError(f"TensorBoard: `update_freq` must be 'epoch', 'batch' or a positive int; got {update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self.write_steps_per_second = write_steps_per_second
        self._writers: dict[str, EventFileWriter] = {}
        self._last_written = 0
        self._epoch_start = 0.0
        self._epoch_first_step = 0
        self._epoch_global_start = 0
        self._global: int | None = 0
        self._file_name: str | None = None  # one name per fit, the same in train/ and validation/
        self._resume_sizes: dict[str, int] = {}  # from a backup: the bytes of each run's file to keep

    execution_aware = True  # writes at execution boundaries; does not need one step per execution

    def _writer(self, run: str) -> EventFileWriter:
        if run not in self._writers:
            folder = os.path.join(self.log_dir, run)
            keep = self._resume_sizes.pop(run, None)
            try:
                self._writers[run] = EventFileWriter(folder, file_name=self._file_name, keep_bytes=keep)
            except ValueError as err:  # the file was changed or removed since the backup
                warnings.warn(f"TensorBoard: cannot continue the event file of the backup ({err}); writing a new file, so the "
                              "steps trained again after the backup may appear twice", RuntimeWarning, stacklevel=3)
                self._writers[run] = EventFileWriter(folder)
        return self._writers[run]

    def _global_step(self) -> int:
        """The training step reached, counted on the host (no device sync)."""
        return self._epoch_global_start + int(self.model.fit_loop.state.step) - self._epoch_first_step

    def on_train_begin(self, logs=None):
        self.close()
        self._global = None  # read at the first epoch, after a backup (which restores last) put the state back
        self._last_written = None
        self._file_name = new_file_name()
        self._resume_sizes = {}

    def on_epoch_begin(self, epoch, logs=None):
        if self._global is None:
            self._global = int(np.asarray(self.model.state.step).reshape(-1)[0])  # one read: a resumed run continues its curves
            if self._last_written is None:
                self._last_written = self._global
        self._epoch_start = time.perf_counter()
        self._epoch_first_step = int(self.model.fit_loop.state.step)
        self._epoch_global_start = self._global

    def wants_batch_logs(self) -> bool:
        if self.update_freq == "epoch":
            return False
        step = self._global_step()
        return step // self.update_freq > self._last_written // self.update_freq

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch" or logs is None or not self.wants_batch_logs():
            return
        step = self._global = self._global_step()
        self._writer("train").add_scalars({f"batch_{k}": v for k, v in logs.items()}, step)
        self._last_written = step

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self._global = self._global_step()
        train = {f"epoch_{k}": v for k, v in logs.items() if not k.startswith("val_")}
        if "epoch_learning_rate" not in train:
            rate = self._learning_rate()
            if rate is not None:
                train["epoch_learning_rate"] = rate
        if self.write_steps_per_second:
            steps = int(self.model.fit_loop.state.step) - self._epoch_first_step
            elapsed = time.perf_counter() - self._epoch_start
            train["epoch_steps_per_second"] = steps / elapsed if elapsed > 0 else 0.0
        loop = self.model.fit_loop
        if loop.throughput and loop.throughput[-1]["epoch"] == epoch:  # what the loop measured for this epoch
            measured = loop.throughput[-1]
            train.update({f"epoch_{k}": measured[k] for k in ("examples_per_second", "tokens_per_second", "mfu")
                          if measured.get(k) is not None})
        self._writer("train").add_scalars(train, epoch)
        if self._hparams_summary is not None and epoch == 0:
            self._writer("train").add_summary(self._hparams_summary, 0)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._writer("train").add_values(self._weight_values(), epoch)
        val = {f"epoch_{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}
        if val:
            self._writer("validation").add_scalars(val, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        self.close()

    def _learning_rate(self) -> float | None:
        from nnjax.train.optimizers import get_learning_rate

        state = getattr(self.model, "state", None)
        rate = None if state is None else get_learning_rate(state.opt_state)
        if rate is None:
            return None
        rate = np.asarray(rate, np.float64).reshape(-1)
        return float(rate[0]) if rate.size == 1 else None  # an ensemble's per-member rates: see its histories

    def _weight_values(self) -> list[bytes]:
        """Histograms (and images) of every weight, tagged by its path."""
        state = self.model.state
        values = []
        for part in (state.params, state.model_state):
            for path, leaf in part.flat_state():
                array = np.asarray(leaf.get_value() if hasattr(leaf, "get_value") else leaf)
                if not np.issubdtype(array.dtype, np.floating):
                    continue
                name = "/".join(str(p) for p in path)
                values.append(histogram_value(f"{name}/histogram", array.astype(np.float64)))
                if self.write_images and array.ndim in (1, 2):
                    image = array.reshape(1, -1) if array.ndim == 1 else (array.T if array.shape[0] > array.shape[1] else array)
                    low, high = float(image.min()), float(image.max())
                    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
                    values.append(image_value(f"{name}/image", np.round(scaled * 255).astype(np.uint8)))
        return values

    def close(self) -> None:
        """Closes the event files (what was written stays)."""
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def get_state(self) -> dict:
        """The file name and each run's bytes so far (a resumed fit continues them), and the step of the last batch write."""
        return {"file_name": self._file_name, "sizes": {run: writer.size() for run, writer in self._writers.items()},
                "last_written": self._last_written}

    def set_state(self, state: dict) -> None:
        """Continues the backup's event files: each is cut back to its size at the backup, then appended to."""
        name = state.get("file_name")
        sizes = state.get("sizes") if isinstance(state.get("sizes"), dict) else {}
        if not isinstance(name, str) or os.path.basename(name) != name or not name.startswith("events.out.tfevents."):
            return
        self._file_name = name
        for run in ("train", "validation"):
            size = sizes.get(run, 0)
            # A run without a file at the backup starts afresh, replacing what the interrupted fit wrote after it.
            self._resume_sizes[run] = int(size) if isinstance(size, int) and size >= 0 else 0
        last = state.get("last_written")
        if isinstance(last, int):
            self._last_written = last


def _hparams_summary(hparams: dict) -> bytes:
    """TensorBoard's HParams summary of `hparams`, serialized (its protocol buffers come with `tensorboard`)."""
    try:
        from tensorboard.plugins.hparams import summary_v2
    except ImportError as err:
        raise ValueError("TensorBoard: `hparams=` writes TensorBoard's HParams format, which needs the tensorboard "
                         "package (pip install tensorboard); received hparams but it is not installed") from err
    for name, value in hparams.items():
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"TensorBoard: hparam {name!r} must be a bool, int, float or str; got {type(value).__name__}")
    return summary_v2.hparams_pb(hparams).SerializeToString()


__all__ = ["TensorBoard"]
