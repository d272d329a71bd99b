"""Multi-host training through JAX's own runtime (`jax.distributed`).

Every process runs the same script. After `nj.parallel.initialize(...)`,
`jax.devices()` lists the devices of all processes, and a `DataParallel` (or
`FSDP`) strategy built on them spans the hosts: each process feeds the same
full batch from its own copy of the data, transfers only the shards its own
devices hold, and XLA's collectives (NCCL, or gloo between CPU processes) do
the rest. Nothing else in the script changes.

    nj.parallel.initialize(coordinator_address="10.0.0.1:1234", num_processes=2, process_id=RANK)
    model.compile(..., distribution=nj.parallel.DataParallel())
    model.fit(x, y, batch_size=64)

On one host, `initialize()` without arguments does nothing (or auto-detects a
cluster: SLURM, Open MPI, Kubernetes, Cloud TPU), so the same script runs on one
machine or many.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    *,
    cpu_devices: int | None = None,
    initialization_timeout: int = 300,
    **kwargs,
) -> bool:
    """Joins a multi-process JAX job (`jax.distributed.initialize`); a no-op for one process.

    Call it at the start of the script, before any JAX computation.

    Args:
      coordinator_address: `"host:port"` of process 0, reachable from every
        process. None: auto-detect a cluster, or run as a single process.
      num_processes: the number of processes in the job (1: single process, nothing to do).
      process_id: this process's rank in `[0, num_processes)`.
      local_device_ids: the local devices this process uses (all when None).
      cpu_devices: run on this many CPU devices per process (sets
        `jax_num_cpu_devices`; for testing on one machine without accelerators).
      initialization_timeout: seconds to wait for every process to connect
        before raising instead of hanging.
      **kwargs: other `jax.distributed.initialize` arguments
        (`heartbeat_timeout_seconds`, `shutdown_timeout_seconds`, ...).

    Returns:
      True if this process is part of a job of several processes.

    Raises:
      ValueError: for an inconsistent `num_processes`/`process_id`.
      RuntimeError: from JAX if the backend was already used (`cpu_devices`) or
        the job could not form within `initialization_timeout`.

    Example:
      >>> # two processes: not run by the doctests
      >>> nj.parallel.initialize("127.0.0.1:12345", num_processes=2, process_id=0, cpu_devices=2)  # doctest: +SKIP
    """
    if cpu_devices is not None:
        if isinstance(cpu_devices, bool) or not isinstance(cpu_devices, int) or cpu_devices < 1:
            raise ValueError(f"initialize: `cpu_devices` must be a positive int; got {cpu_devices!r}")
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", cpu_devices)
    if num_processes is not None:
        if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
            raise ValueError(f"initialize: `num_processes` must be a positive int; got {num_processes!r}")
        if process_id is not None and not 0 <= process_id < num_processes:
            raise ValueError(f"initialize: `process_id` must be in [0, {num_processes}); got {process_id!r}")
        if num_processes == 1:
            return False
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    if coordinator_address is None and num_processes is None and process_id is None:
        try:
            jax.distributed.initialize(local_device_ids=local_device_ids, initialization_timeout=initialization_timeout, **kwargs)
        except ValueError as err:
            if "coordinator_address" in str(err):  # no cluster detected: a single process
                return False
            raise
        return jax.process_count() > 1
    if coordinator_address is None or num_processes is None or process_id is None:
        raise ValueError(
            "initialize: pass all of coordinator_address, num_processes and process_id (or none of them to auto-detect); "
            f"received coordinator_address={coordinator_address!r}, num_processes={num_processes!r}, process_id={process_id!r}"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
        **kwargs,
    )
    return jax.process_count() > 1


def shutdown() -> None:
    """Leaves the multi-process job (`jax.distributed.shutdown`); a no-op if none was joined."""
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()


def is_main_process() -> bool:
    """True on process 0 (the one that should print, log and write checkpoints metadata)."""
    return jax.process_index() == 0


__all__ = ["initialize", "is_main_process", "shutdown"]
