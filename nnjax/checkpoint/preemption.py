"""Preemption on a single host: turn SIGTERM into a flag the training loop checks between steps.

Orbax's `reached_preemption` needs JAX's distributed preemption service
(`jax.distributed.initialize`); a single-host job gets nothing from it. Cluster
schedulers (SLURM, Kubernetes, cloud spot VMs) send SIGTERM and wait a grace
period before SIGKILL: `PreemptionGuard` records the signal so the loop can
finish its step, write a checkpoint and exit.
"""

from __future__ import annotations

import signal
import threading
import warnings


class PreemptionGuard:
    """Records SIGTERM (or other signals) instead of dying, while installed.

    Repeated signals are counted (`count`) and ignored while the guard is
    installed: schedulers and users often send SIGTERM twice, and the second must
    not kill the checkpoint being written for the first. Uninstall the guard once
    that checkpoint is committed; a stuck job still dies by SIGKILL (which
    schedulers send when the grace period ends) or by SIGINT.

    Args:
      signals: the signals to catch (default: SIGTERM).

    Example:
      >>> state, batch, mngr = model.state, (x[:32], y[:32]), nj.checkpoint.CheckpointManager("run")
      >>> with nj.checkpoint.PreemptionGuard() as guard:
      ...     for step in range(0, 3):
      ...         state, _ = nj.train.train_step(state, batch)
      ...         if guard.requested:
      ...             mngr.save(step + 1, state, force=True)
      ...             mngr.wait_until_finished()
      ...             break
      >>> mngr.close()
    """

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.received: int | None = None
        self.count = 0
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        """True once one of the signals has arrived."""
        return self.received is not None

    def _handler(self, signum, frame):
        self.count += 1
        if self.received is None:
            self.received = signum

    def install(self) -> bool:
        """Installs the handlers; returns False (with a warning) outside the main thread, where Python cannot."""
        if self._previous:
            return True
        if threading.current_thread() is not threading.main_thread():
            warnings.warn("PreemptionGuard: signal handlers can only be installed from the main thread; SIGTERM will not "
                          "trigger a checkpoint", stacklevel=2)
            return False
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handler)
        return True

    def uninstall(self) -> None:
        """Restores the handlers that were installed before."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def __enter__(self) -> PreemptionGuard:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()


__all__ = ["PreemptionGuard"]
