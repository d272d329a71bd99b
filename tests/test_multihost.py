"""Two processes on 127.0.0.1 (2 CPU devices each, jax.distributed) train as one process with 4 devices."""

import importlib.util
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "multihost.py")
TIMEOUT_S = 240  # the whole job, both processes; they are killed after it


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _example():
    spec = importlib.util.spec_from_file_location("multihost_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_four_devices(tmp_path):
    from nnjax import parallel

    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")  # each process: its own 2 CPU devices
    procs = []
    try:
        for rank in range(2):
            command = [
                sys.executable,
                EXAMPLE,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(rank),
                "--cpu-devices",
                "2",
                "--timeout",
                "60",
                "--out",
                str(tmp_path / f"{rank}.json"),
            ]
            procs.append(
                subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )
        outputs = [proc.communicate(timeout=TIMEOUT_S)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    for rank, (proc, output) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, f"process {rank} failed:\n{output[-3000:]}"
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]

    reference_losses, reference_weights = _example().train(parallel.DataParallel(jax.devices()[:4]))
    for rank, result in enumerate(results):
        assert (result["process_index"], result["process_count"], result["global_devices"], result["local_devices"]) == (
            rank,
            2,
            4,
            2,
        )
        np.testing.assert_allclose(result["loss"], reference_losses, rtol=0, atol=1e-5)
        for weight, reference in zip(result["weights"], reference_weights, strict=True):
            np.testing.assert_allclose(np.asarray(weight, np.float32), reference, rtol=0, atol=1e-5)
    assert json.loads(outputs[0].strip().splitlines()[-1])["loss"] == results[0]["loss"]  # process 0 prints the JSON


def test_initialize_is_a_no_op_for_one_process():
    from nnjax import parallel

    assert parallel.initialize(num_processes=1) is False
    # Without arguments and without a cluster it leaves a fresh process single (before any JAX call, as documented).
    code = "from nnjax import parallel; import jax; print(parallel.initialize(), jax.process_count())"
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "1"], result.stderr[-2000:]
    with pytest.raises(ValueError, match=r"`process_id` must be in \[0, 2\); got 2"):
        parallel.initialize("127.0.0.1:1", num_processes=2, process_id=2)
    with pytest.raises(ValueError, match="pass all of coordinator_address, num_processes and process_id"):
        parallel.initialize("127.0.0.1:1")
    assert parallel.is_main_process()
