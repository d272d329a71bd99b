"""`CheckpointManager`: numbered checkpoints for a training loop, with retention, async saves and fallback.

    <directory>/<step>/                       one committed checkpoint per saved step
    <directory>/<step>.nnjax-new-<pid>-<n>/   a save in progress (Orbax's temporary folder of it, then the folder),
                                              renamed (or swapped, with `force=True`) to <step> once committed;
                                              an interrupted one is completed or removed at the next start
    <directory>/quarantine/<step>-<n>/        checkpoints found corrupt, moved aside, never deleted
    <directory>/.nnjax-lock                   held by the open manager: pid and host (see `nnjax.checkpoint.lock`)

A step is committed once its manifest exists (see `nnjax.checkpoint.manifest`).
Retention runs only after a new step is committed, so a crash at any moment
leaves at least one committed checkpoint.

The manager deletes only what nnjax wrote (folders with its manifest or its
`nnjax_uncommitted` marker, and its own temporary names). A directory holding
step-named folders it did not write (plain Orbax checkpoints, user folders named
`1/`, `2020/`) is refused with `ForeignFolderError` naming them, before anything
is touched: a manager never opens such a directory, not even read-only. Restore
a plain Orbax checkpoint with `nj.checkpoint.restore(path, target, allow_unverified=True)`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
import weakref
from typing import Any, NamedTuple

from nnjax.checkpoint import core, folders
from nnjax.checkpoint import manifest as manifest_lib
from nnjax.checkpoint.errors import (
    CheckpointCorruptError,
    CheckpointSaveError,
    ForeignFolderError,
    UntrustedCheckpointError,
    describe,
)
from nnjax.checkpoint.lock import DirectoryLock

log = logging.getLogger(__name__)


class Restored(NamedTuple):
    """What `CheckpointManager.restore` returns.

    Attributes:
      step: the step restored.
      state: the restored tree (same type as the target).
      metadata: the JSON metadata saved with it.
      metrics: the metrics saved with it.
      skipped: `((step, reason), ...)` for newer checkpoints that failed verification.
      arrays: the restored `arrays` item (see `CheckpointManager.save`), or None if it was not read.
    """

    step: int
    state: Any
    metadata: dict
    metrics: dict
    skipped: tuple
    arrays: Any = None


class CheckpointManager:
    """Saves a training loop's state every N steps; keeps the last N and the best K; restores the latest good one.

    Args:
      directory: folder holding one sub-folder per saved step (created if needed).
      max_to_keep: how many of the most recent steps to keep (None keeps all).
        The latest committed step is never deleted.
      keep_best: also keep this many steps with the best `best_metric`.
      best_metric: the name of a metric passed to `save(metrics=...)`.
      best_mode: "min" or "max".
      save_interval_steps: `save` writes only steps that are multiples of this
        (unless `force=True`).
      async_save: write in the background: `save` returns once the arrays are
        copied to host memory. A background failure is raised by the next `save`,
        `wait_until_finished` or `close`, never dropped.
      fsync: flush every file to disk before committing a step.
      max_elements: the cap on array sizes a checkpoint may claim (see `restore`).

    Creating a manager locks `directory` (see `nnjax.checkpoint.lock`): a second
    process gets `CheckpointLockError` naming the holder's pid and host, until
    `close`. It then removes what interrupted saves left in `directory` (nnjax's
    temporary and never-committed folders, never anything else).

    Raises:
      CheckpointLockError: if another process has the directory open.
      ForeignFolderError: if the directory holds step-named folders nnjax did not write.

    Example:
      >>> state, batch, num_steps = model.state, (x[:32], y[:32]), 4
      >>> with nj.checkpoint.CheckpointManager("run", max_to_keep=3) as mngr:
      ...     start = 0
      ...     if mngr.latest_step() is not None:
      ...         r = mngr.restore(target=state)
      ...         state, start = r.state, r.step
      ...     for step in range(start, num_steps):
      ...         state, metrics = nj.train.train_step(state, batch)
      ...         saved = mngr.save(step + 1, state, metrics={"loss": metrics["loss"]})  # async: True once queued
      ...     mngr.wait_until_finished()
      ...     latest = mngr.latest_step()
      >>> latest
      4
    """

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = None, keep_best: int = 0,
                 best_metric: str | None = None, best_mode: str = "min", save_interval_steps: int = 1,
                 async_save: bool = True, fsync: bool = True, max_elements: int | None = None):
        if max_to_keep is not None and (isinstance(max_to_keep, bool) or not isinstance(max_to_keep, int) or max_to_keep < 1):
            raise ValueError(f"CheckpointManager: `max_to_keep` must be None or an int >= 1; got {max_to_keep!r}")
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 0:
            raise ValueError(f"CheckpointManager: `keep_best` must be an int >= 0; got {keep_best!r}")
        if keep_best and not best_metric:
            raise ValueError("CheckpointManager: `keep_best` needs `best_metric`, the name of a metric passed to save(metrics=...)")
        if best_mode not in ("min", "max"):
            raise ValueError(f"CheckpointManager: `best_mode` must be 'min' or 'max'; got {best_mode!r}")
        if isinstance(save_interval_steps, bool) or not isinstance(save_interval_steps, int) or save_interval_steps < 1:
            raise ValueError(f"CheckpointManager: `save_interval_steps` must be an int >= 1; got {save_interval_steps!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.max_to_keep = max_to_keep
        self.keep_best = keep_best
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.save_interval_steps = save_interval_steps
        self.async_save = async_save
        self.fsync = fsync
        self.max_elements = max_elements
        os.makedirs(self.directory, exist_ok=True)
        self._lock = threading.RLock()
        self._checkpointer = None
        self._in_flight: int | None = None
        self._in_flight_target: str | None = None
        self._bad_steps: set[int] = set()
        self._metrics: dict[int, dict] = {}
        self._closed = False
        self._release = self._hold_lock()
        try:
            self._cleanup()
        except BaseException:
            self._release()
            raise

    def _hold_lock(self):
        """Takes the directory's lock; returns a once-only release that also runs if the manager is dropped unclosed."""
        import jax

        if jax.process_count() > 1 and jax.process_index() != 0:
            return weakref.finalize(self, lambda: None)  # one job's processes share the directory: its first one holds the lock
        lock = DirectoryLock.acquire(self.directory, what="CheckpointManager")
        return weakref.finalize(self, lock.release)

    # ------------------------------------------------------------------ listing
    def _step_folder(self, step: int) -> str:
        return os.path.join(self.directory, str(int(step)))

    def _scan(self) -> list[int]:
        """Committed steps, ascending."""
        return sorted(int(name) for name in os.listdir(self.directory)
                      if name.isdigit() and folders.is_committed(os.path.join(self.directory, name)))

    def _cleanup(self) -> None:
        """Removes what interrupted saves left behind; refuses a directory holding step folders nnjax did not write."""
        foreign, interrupted = [], set()
        for name in sorted(os.listdir(self.directory)):
            full = os.path.join(self.directory, name)
            if name.isdigit():
                if folders.is_pending(full) and not folders.is_committed(full):
                    interrupted.add(name)
                elif not folders.is_committed(full):
                    foreign.append(name)
                continue
            base = name
            for marker in (core.TMP_MARKER, folders.TRASH_MARKER, folders.NEW_SUFFIX, folders.OLD_SUFFIX):
                base = base.split(marker)[0]
            if base.isdigit() and base != name:
                interrupted.add(base)
        if foreign:
            raise ForeignFolderError(
                f"CheckpointManager: {self.directory!r} holds folders named like steps that nnjax did not write "
                f"({', '.join(repr(n) for n in foreign[:5])}{', ...' if len(foreign) > 5 else ''}: no {manifest_lib.MANIFEST_NAME}; "
                f"{os.path.join(self.directory, foreign[0])!r} holds {folders.contents(os.path.join(self.directory, foreign[0]))}). "
                "A manager never deletes or overwrites what it did not write: give it a directory of its own. To read a plain "
                "Orbax checkpoint, use nj.checkpoint.restore(path, target, allow_unverified=True)", path=self.directory)
        for name in sorted(interrupted, key=int):
            full = os.path.join(self.directory, name)
            log.info("nnjax.checkpoint: cleaning up the interrupted save of %s", full)
            folders.recover(full, what="CheckpointManager")
            if folders.is_pending(full) and not folders.is_committed(full):
                folders.discard(full)

    def all_steps(self) -> list[int]:
        """Committed steps, ascending (their files are not verified here; `restore` does that)."""
        return self._scan()

    def latest_step(self) -> int | None:
        """The newest committed step, or None."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def metrics(self, step: int) -> dict:
        """The metrics saved with `step` (from its manifest)."""
        if step not in self._metrics:
            manifest = manifest_lib.read_manifest(self._step_folder(step), step=step)
            self._metrics[step] = dict(manifest["metrics"]) if manifest else {}
        return self._metrics[step]

    def best_step(self) -> int | None:
        """The committed step with the best finite `best_metric`, or None (the newest wins ties)."""
        if not self.best_metric:
            return None
        ranked = self._ranked(self.all_steps())
        return ranked[0] if ranked else None

    def _ranked(self, steps: list[int]) -> list[int]:
        scored = []
        for step in steps:
            try:
                value = self.metrics(step).get(self.best_metric)
            except (UntrustedCheckpointError, CheckpointCorruptError):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                scored.append((value if self.best_mode == "min" else -value, -step, step))
        return [s for *_, s in sorted(scored)]

    def steps_to_keep(self, steps: list[int]) -> set[int]:
        """The retention rule: the newest step, the last `max_to_keep`, the best `keep_best`."""
        if not steps:
            return set()
        keep = {steps[-1]}
        keep |= set(steps if self.max_to_keep is None else steps[-self.max_to_keep:])
        if self.keep_best:
            keep |= set(self._ranked(steps)[: self.keep_best])
        return keep

    # ------------------------------------------------------------------ saving
    def should_save(self, step: int) -> bool:
        """True if `save(step, ...)` would write (a multiple of `save_interval_steps`, not saved yet)."""
        step = int(step)
        saved = step in self.all_steps() and step not in self._bad_steps  # a step found corrupt may be written again
        return step % self.save_interval_steps == 0 and not saved and step != self._in_flight

    def save(self, step: int, state: Any, *, metrics: dict | None = None, metadata: dict | None = None, force: bool = False,
             arrays: Any = None) -> bool:
        """Saves `state` as `step` (in the background when `async_save`).

        Args:
          step: a non-negative int; the folder name.
          state: a `TrainState` or pytree of arrays (copy-free: the arrays are
            read before this returns, so the next step may donate them).
          metrics: `{name: float}` kept in the manifest (for `keep_best`).
          metadata: JSON data saved next to the arrays.
          force: save even off-interval, and replace an existing `step`.
          arrays: an optional second pytree of arrays, saved as its own item beside `state`
            (verified and restored like it: `restore(arrays_target=...)`).

        Returns:
          True if a save was started, False if `step` is off-interval or already saved.

        Raises:
          CheckpointSaveError: if the previous background save failed (it is
            reported here, once) or this one fails in the foreground.
        """
        self._check_open()
        if isinstance(step, bool) or int(step) != step or step < 0:
            raise ValueError(f"CheckpointManager.save: `step` must be a non-negative int; got {step!r}")
        step = int(step)
        if not force and not self.should_save(step):
            return False
        meta, metrics = core.prepare_save(state, metadata, metrics, arrays)
        with self._lock:
            return self._save_locked(step, state, meta, metrics, force, arrays)

    def _save_locked(self, step: int, state: Any, meta: dict, metrics: dict, force: bool, arrays: Any = None) -> bool:
        self._finish_previous()
        path = self._step_folder(step)
        if os.path.lexists(path):
            if step in self._bad_steps and folders.is_owned(path):
                self._quarantine(step)
            elif not force:
                return False
        target = core.save_target(path, what="CheckpointManager.save")
        if self._checkpointer is None:
            self._checkpointer = core.new_checkpointer()
        try:
            core.start_save(self._checkpointer, target, state, metadata=meta, step=step, metrics=metrics, fsync=self.fsync,
                            swap_to=path, arrays=arrays)
        except Exception as err:
            folders.abandon(target, path)
            raise CheckpointSaveError(f"CheckpointManager: saving {describe(step, path)} failed: {type(err).__name__}: {err}",
                                      step=step, path=path) from err
        self._in_flight, self._in_flight_target = step, target
        self._metrics.pop(step, None)
        if not self.async_save:
            self._finish_previous()
        return True

    def _finish_previous(self) -> None:
        """Waits for the save in flight; on success applies retention, on failure cleans up and raises."""
        step, target = self._in_flight, self._in_flight_target
        if step is None:
            return
        self._in_flight = self._in_flight_target = None
        try:
            self._checkpointer.wait_until_finished()
        except Exception as err:
            path = self._step_folder(step)
            core.forget_request(target)
            try:
                folders.abandon(target, path)
            except OSError as cleanup_error:
                log.warning("nnjax.checkpoint: cleaning up after the failed save of %s: %r", path, cleanup_error)
            raise CheckpointSaveError(
                f"CheckpointManager: the background save of {describe(step, path)} failed: {type(err).__name__}: {err}. "
                f"Earlier checkpoints are intact (latest committed step: {self.latest_step()})", step=step, path=path) from err
        if not folders.is_committed(self._step_folder(step)):
            raise CheckpointSaveError(f"CheckpointManager: the save of step {step} finished without committing its manifest",
                                      step=step, path=self._step_folder(step))
        self._apply_retention()

    def _apply_retention(self) -> None:
        steps = self.all_steps()
        keep = self.steps_to_keep(steps)
        for step in steps:
            if step not in keep:
                self._delete(step)

    def _delete(self, step: int) -> None:
        # Renamed away first (atomic), so a crash mid-delete never leaves a committed step with missing files.
        folders.discard(self._step_folder(step))
        self._metrics.pop(step, None)

    def _quarantine(self, step: int) -> str:
        qdir = os.path.join(self.directory, "quarantine")
        os.makedirs(qdir, exist_ok=True)
        n = 0
        while os.path.lexists(os.path.join(qdir, f"{step}-{n}")):
            n += 1
        dest = os.path.join(qdir, f"{step}-{n}")
        os.replace(self._step_folder(step), dest)
        self._bad_steps.discard(step)
        self._metrics.pop(step, None)
        warnings.warn(f"nnjax.checkpoint: moved the corrupt checkpoint of step {step} to {dest}", stacklevel=3)
        return dest

    def wait_until_finished(self) -> None:
        """Blocks until the save in flight is committed.

        Raises:
          CheckpointSaveError: if it failed.
        """
        with self._lock:
            self._finish_previous()

    def close(self) -> None:
        """Waits for the save in flight (raising its error, if any), releases Orbax's threads and the directory's lock."""
        if self._closed:
            return
        error = None
        try:
            self.wait_until_finished()
        except BaseException as err:
            error = err
        self._closed = True
        if self._checkpointer is not None:
            checkpointer, self._checkpointer = self._checkpointer, None
            closing_error = core.close_checkpointer(checkpointer, error)
            if error is None and closing_error is not None:
                error = CheckpointSaveError(f"CheckpointManager({self.directory!r}): closing the checkpointer failed: "
                                            f"{type(closing_error).__name__}: {closing_error}", path=self.directory)
                error.__cause__ = closing_error
        self._release()
        if error is not None:
            raise error

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"CheckpointManager({self.directory!r}) is closed")

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the loop's own exception; still surface a save failure in the log
            try:
                self.close()
            except CheckpointSaveError as err:
                log.error("%s", err)

    # ------------------------------------------------------------------ restoring
    def restore(self, step: int | None = None, *, target: Any, fallback: bool = True, arrays_target: Any = None) -> Restored:
        """Verifies and restores `step`, or the newest committed step that verifies.

        Args:
          step: the step to restore; None for the latest.
          target: the structure, shapes, dtypes and shardings to restore onto.
          fallback: with `step=None`, skip checkpoints that fail verification
            (corrupt or unsafe files) and take the previous one; each skip is warned about
            and listed in `Restored.skipped`, and the bad folder is moved to
            `quarantine/` at the next save of that step.
          arrays_target: the target of the `arrays` item saved by `save(arrays=...)`: a pytree, or
            a function of the candidate's verified metadata returning one (None: not read). See
            `nnjax.checkpoint.core.restore_folder_with_arrays`.

        Returns:
          `Restored(step, state, metadata, metrics, skipped, arrays)`.

        Raises:
          FileNotFoundError: if there is no committed checkpoint (or no `step`).
          CheckpointCorruptError: if `step` (or, with fallback, every checkpoint) fails verification.
          UntrustedCheckpointError / CheckpointMismatchError: as `nj.checkpoint.restore`.
        """
        self.wait_until_finished()
        steps = self.all_steps()
        if step is not None:
            if int(step) not in steps:
                raise FileNotFoundError(f"CheckpointManager: no committed checkpoint of step {step} in {self.directory!r}; "
                                        f"committed steps: {steps}")
            candidates = [int(step)]
        else:
            if not steps:
                raise FileNotFoundError(f"CheckpointManager: no committed checkpoint in {self.directory!r}")
            candidates = steps[::-1] if fallback else steps[-1:]
        skipped = []
        for candidate in candidates:
            folder = self._step_folder(candidate)
            try:
                state, metadata, arrays = core.restore_folder_with_arrays(folder, target, step=candidate,
                                                                          max_elements=self.max_elements, arrays_target=arrays_target)
            except (CheckpointCorruptError, UntrustedCheckpointError) as err:
                if step is not None or not fallback:
                    raise
                self._bad_steps.add(candidate)
                skipped.append((candidate, str(err)))
                warnings.warn(f"nnjax.checkpoint: skipping step {candidate}: {err}", stacklevel=2)
                continue
            return Restored(candidate, state, metadata, self.metrics(candidate), tuple(skipped), arrays)
        raise CheckpointCorruptError(
            f"CheckpointManager: no checkpoint in {self.directory!r} verifies: "
            + "; ".join(f"step {s}: {reason}" for s, reason in skipped), step=candidates[-1], path=self.directory)

    def delete_all(self) -> None:
        """Deletes every checkpoint (committed or not) and the folder if it ends up empty; keeps `quarantine/`.

        Closes the manager (it takes the directory's lock again for this if it was closed already).
        """
        if self._closed:
            self._release = self._hold_lock()
        else:
            self.wait_until_finished()
        try:
            for step in self.all_steps():
                self._delete(step)
            self._cleanup()
        finally:
            self._closed = False
            self.close()
        try:
            os.rmdir(self.directory)
        except OSError:
            pass


__all__ = ["CheckpointManager", "Restored"]
