"""Checkpoints never lose data: folders nnjax did not write, Orbax's own checkpoints, crafted metadata, locks, SIGTERMs.

References are independent of the code under test: the bytes of user files and
of Orbax-written folders (hashed before and after), arrays written by Orbax
itself (`ocp.StandardCheckpointer`, `ocp.CheckpointManager`) from a real Flax NNX
module, metadata rewritten with TensorStore's own key-value API, and real
processes for locks and signals.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import nnjax as nj
from nnjax.checkpoint import (
    CheckpointCorruptError,
    CheckpointLockError,
    CheckpointManager,
    ForeignFolderError,
    UnverifiedCheckpointError,
    UnverifiedCheckpointWarning,
)

REPO = Path(__file__).resolve().parent.parent


def tree_digest(root) -> dict:
    """{relative path: sha256} of every file under `root` (the file system's view, not nnjax's)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            out[os.path.relpath(full, root)] = hashlib.sha256(open(full, "rb").read()).hexdigest()
    return out


def user_folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "images" / "cat.png").write_bytes(os.urandom(2048))
    (root / "labels.csv").write_text("file,label\ncat.png,0\n")
    return root


def tiny_model(seed=0):
    nj.utils.set_random_seed(seed)
    model = nj.Sequential([nj.layers.Dense(8, activation="relu"), nj.layers.Dense(3, activation="softmax")])
    model.build((None, 4))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", seed=seed)
    return model


def child_env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------------------- folders nnjax did not write
def test_save_weights_onto_a_user_folder_refuses_and_deletes_nothing(tmp_path):
    data = user_folder(tmp_path / "data")
    before = tree_digest(data)
    model = tiny_model()
    with pytest.raises(ForeignFolderError, match=r"'.*data' exists and was not written by nnjax.*'images', 'labels.csv'"):
        model.save_weights(str(data))
    with pytest.raises(ForeignFolderError, match="data"):
        nj.checkpoint.save(data, {"w": np.ones(3, np.float32)}, overwrite=True)
    x = np.zeros((8, 4), np.float32)
    with pytest.raises(ForeignFolderError, match="data"):
        model.fit(
            x,
            np.zeros(8, np.int32),
            epochs=1,
            verbose=0,
            callbacks=[nj.callbacks.ModelCheckpoint(str(data), save_weights_only=True, monitor="loss")],
        )
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ForeignFolderError, match="a file"):
        model.save_weights(str(tmp_path / "notes.txt"))
    assert tree_digest(data) == before and (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["data", "notes.txt"]  # no sibling or temporary folder left either


def test_save_weights_still_replaces_its_own_checkpoint_and_an_empty_folder(tmp_path):
    model = tiny_model()
    (tmp_path / "empty").mkdir()
    model.save_weights(str(tmp_path / "empty"))
    expected = [w.copy() for w in model.get_weights()]
    model.save_weights(str(tmp_path / "empty"))  # its own: replaced
    other = tiny_model(seed=1)
    other.load_weights(str(tmp_path / "empty"))
    assert all(np.array_equal(a, b) for a, b in zip(other.get_weights(), expected, strict=True))
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def write_plain_orbax_manager(directory: Path, steps=(1, 2)):
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(directory) as mngr:
        for step in steps:
            mngr.save(step, args=ocp.args.StandardSave({"w": np.full(4, float(step), np.float32)}))
        mngr.wait_until_finished()


def test_manager_refuses_a_folder_of_plain_orbax_checkpoints_and_deletes_none(tmp_path):
    root = tmp_path / "orbax_run"
    write_plain_orbax_manager(root)
    before = tree_digest(root)
    with pytest.raises(ForeignFolderError, match=r"orbax_run.*'1', '2'.*never deletes.*allow_unverified=True"):
        CheckpointManager(root, max_to_keep=1)
    assert tree_digest(root) == before


def test_backup_dir_with_user_folders_named_like_steps_is_refused(tmp_path):
    backup = tmp_path / "b"
    user_folder(backup / "1")
    user_folder(backup / "2020")
    (backup / "notes").mkdir()
    before = tree_digest(backup)
    model = tiny_model()
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    with pytest.raises(ForeignFolderError, match=r"'1', '2020'"):
        model.fit(x, np.zeros(16, np.int32), epochs=1, verbose=0, callbacks=[nj.callbacks.BackupAndRestore(backup)])
    assert tree_digest(backup) == before and sorted(os.listdir(backup)) == ["1", "2020", "notes"]


def test_manager_cleanup_removes_only_marked_leftovers(tmp_path):
    with CheckpointManager(tmp_path, fsync=False) as mngr:
        mngr.save(1, {"w": np.ones(2, np.float32)})
        mngr.save(2, {"w": np.ones(2, np.float32)})
    user_folder(tmp_path / "3.orbax-checkpoint-tmp-123")  # unmarked: maybe another program's, kept
    (tmp_path / "5.orbax-checkpoint-tmp-9").mkdir()
    (tmp_path / "5.orbax-checkpoint-tmp-9" / "nnjax_uncommitted").write_text("")
    with CheckpointManager(tmp_path, max_to_keep=1) as mngr:
        mngr.save(4, {"w": np.ones(2, np.float32)})
    assert sorted(os.listdir(tmp_path)) == ["3.orbax-checkpoint-tmp-123", "4"]


# ---------------------------------------------------------------------------- plain Orbax checkpoints
def nnx_module():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(4, 6, rngs=rngs)
            self.norm = nnx.BatchNorm(6, rngs=rngs)
            self.head = nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x):
            return self.head(self.norm(self.linear(x)))

    return Net(nnx.Rngs(0))


def test_plain_orbax_nnx_state_restores_only_with_explicit_opt_in(tmp_path):
    import orbax.checkpoint as ocp
    from flax import nnx

    module = nnx_module()
    module.norm.mean.value = jax.numpy.arange(6, dtype=np.float32)  # batch statistics that differ from a fresh module
    state = nnx.state(module)
    expected = {
        "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
    }
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "flax_ckpt", state)
    checkpointer.wait_until_finished()
    before = tree_digest(tmp_path / "flax_ckpt")

    fresh = nnx.state(nnx_module())
    with pytest.raises(UnverifiedCheckpointError, match=r"plain Orbax checkpoint.*cannot be verified.*allow_unverified=True"):
        nj.checkpoint.restore(tmp_path / "flax_ckpt", fresh)
    with pytest.warns(UnverifiedCheckpointWarning, match="without verifying its integrity"):
        restored = nj.checkpoint.restore(tmp_path / "flax_ckpt", fresh, allow_unverified=True)
    got = {
        "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]
    }
    assert sorted(got) == sorted(expected)
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert tree_digest(tmp_path / "flax_ckpt") == before  # read-only
    with pytest.raises(UnverifiedCheckpointError, match="allow_unverified=True"):  # Model.load_weights: refused, and says why
        tiny_model().load_weights(str(tmp_path / "flax_ckpt"))

    # The layout Model.load_weights restores onto: {"params": ..., "model_state": ...} of nnx.split(module, nnx.Param, ...).
    _, params, rest = nnx.split(nnx_module(), nnx.Param, ...)
    target = {"params": params.to_pure_dict(), "model_state": rest.to_pure_dict()}
    with pytest.warns(UnverifiedCheckpointWarning):
        loaded = nj.checkpoint.restore_pytree(tmp_path / "flax_ckpt", target, allow_unverified=True)
    assert np.array_equal(np.asarray(loaded["model_state"]["norm"]["mean"]), np.arange(6, dtype=np.float32))
    assert np.array_equal(np.asarray(loaded["params"]["head"]["kernel"]), expected["head/kernel/value"])


def test_plain_orbax_manager_step_restores_and_mismatches_are_named(tmp_path):
    root = tmp_path / "orbax_run"
    write_plain_orbax_manager(root, steps=(3,))
    with pytest.warns(UnverifiedCheckpointWarning):
        restored = nj.checkpoint.restore(root / "3", {"w": np.zeros(4, np.float32)}, allow_unverified=True)
    assert np.array_equal(np.asarray(restored["w"]), np.full(4, 3.0, np.float32))
    with pytest.raises(ValueError, match=r"CheckpointManager directory.*pass one step's folder.*orbax_run/3"):
        nj.checkpoint.restore(root, {"w": np.zeros(4, np.float32)}, allow_unverified=True)
    with pytest.raises(
        nj.checkpoint.CheckpointMismatchError, match=r"\['v'\] are not in the checkpoint.*\['w'\] are not in the target"
    ):
        nj.checkpoint.restore(root / "3", {"v": np.zeros(4, np.float32)}, allow_unverified=True)


def test_own_checkpoints_keep_the_manifest_check(tmp_path):
    nj.checkpoint.save(tmp_path / "c", {"w": np.ones(4, np.float32)})
    os.remove(tmp_path / "c" / "nnjax_manifest.json")
    (tmp_path / "c" / "nnjax_uncommitted").write_text("")  # what an interrupted nnjax save looks like
    for allow in (False, True):
        with pytest.raises(CheckpointCorruptError, match="never committed"):
            nj.checkpoint.restore(tmp_path / "c", {"w": np.zeros(4, np.float32)}, allow_unverified=allow)


# ---------------------------------------------------------------------------- crafted metadata
def _recompute_manifest(folder):
    # What an attacker does after editing files: a fresh, self-consistent manifest.
    from nnjax.checkpoint.manifest import write_manifest

    old = json.load(open(os.path.join(folder, "nnjax_manifest.json")))
    write_manifest(str(folder), step=old["step"], metrics=old["metrics"], fsync=False)


def _claim_huge_chunks(folder):
    import tensorstore as ts

    kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{folder}/state"}).result()
    key = next(k for k in kv.list().result() if k.endswith(b".zarray"))
    zarray = json.loads(kv.read(key).result().value)
    assert zarray["shape"] == [64, 16]
    zarray["chunks"] = [40000, 40000]
    kv.write(key, json.dumps(zarray).encode()).result()


def test_huge_chunk_claim_is_refused_before_tensorstore_reads_and_falls_back(tmp_path):
    target = {"w": np.zeros((64, 16), np.float32)}
    with CheckpointManager(tmp_path / "run", fsync=False) as mngr:
        mngr.save(1, {"w": np.ones((64, 16), np.float32)})
        mngr.save(2, {"w": np.full((64, 16), 2.0, np.float32)})
    folder = tmp_path / "run" / "2"
    _claim_huge_chunks(folder)
    _recompute_manifest(folder)
    nj.checkpoint.manifest.verify(str(folder))  # the crafted checkpoint passes the integrity check
    with pytest.raises(CheckpointCorruptError, match=r"shape \(64, 16\) claims chunks of shape \(40000, 40000\)"):
        nj.checkpoint.restore(folder, target)
    with CheckpointManager(tmp_path / "run") as mngr, pytest.warns(UserWarning, match="skipping step 2"):
        restored = mngr.restore(target=target)
    assert restored.step == 1 and np.array_equal(np.asarray(restored.state["w"]), np.ones((64, 16), np.float32))


@pytest.mark.parametrize("depth", [400, 200_000])
def test_deeply_nested_metadata_is_corrupt_not_a_recursion_error(tmp_path, depth):
    target = {"w": np.zeros(4, np.float32)}
    with CheckpointManager(tmp_path / "run", fsync=False) as mngr:
        mngr.save(1, {"w": np.ones(4, np.float32)}, metadata={"epoch": 1})
        mngr.save(2, {"w": np.full(4, 2.0, np.float32)}, metadata={"epoch": 2})
    folder = tmp_path / "run" / "2"
    (folder / "metadata" / "metadata").write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    _recompute_manifest(folder)
    with pytest.raises(CheckpointCorruptError, match="metadata"):
        nj.checkpoint.restore(folder, target)
    with pytest.raises(CheckpointCorruptError):
        nj.checkpoint.read_metadata(folder)
    with CheckpointManager(tmp_path / "run") as mngr, pytest.warns(UserWarning, match="skipping step 2"):
        restored = mngr.restore(target=target)
    assert restored.step == 1 and restored.metadata == {"epoch": 1}


# ---------------------------------------------------------------------------- two processes, one directory
HOLDER = """
import os, sys, time
import nnjax as nj
mngr = nj.checkpoint.CheckpointManager(sys.argv[1])
import numpy as np
mngr.save(1, {"w": np.ones(4, np.float32)})
mngr.wait_until_finished()
print("holding", os.getpid(), flush=True)
time.sleep(600)
"""

SECOND = """
import sys
import numpy as np
import nnjax as nj
try:
    mngr = nj.checkpoint.CheckpointManager(sys.argv[1], max_to_keep=1)
except nj.checkpoint.CheckpointLockError as err:
    print("LOCKED", err.holder.get("pid"), err.holder.get("host"), "|", err, flush=True)
    sys.exit(3)
mngr.save(2, {"w": np.full(4, 2.0, np.float32)})
mngr.close()
print("SAVED", mngr.all_steps(), flush=True)
"""


def test_second_process_on_one_directory_gets_a_clear_error_and_a_dead_holder_is_taken_over(tmp_path):
    directory = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], env=child_env(), stdout=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line.startswith("holding"), line
        pid = int(line.split()[1])
        second = subprocess.run(
            [sys.executable, "-c", SECOND, str(directory)], env=child_env(), capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 3, second.stdout + second.stderr[-2000:]
        out = second.stdout
        assert f"LOCKED {pid} {socket.gethostname()} |" in out
        assert str(directory) in out and f"pid {pid} on host {socket.gethostname()!r}" in out
        assert sorted(os.listdir(directory)) == [".nnjax-lock", "1"]  # the second run touched nothing
        with pytest.raises(CheckpointLockError, match=f"pid {pid}"):  # this process too
            CheckpointManager(directory)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    second = subprocess.run(
        [sys.executable, "-c", SECOND, str(directory)], env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr[-2000:]
    assert "SAVED [2]" in second.stdout  # the dead holder's lock was taken over
    assert sorted(os.listdir(directory)) == ["2"]


TWO_SIGTERMS = """
import os, sys, time
import numpy as np
import nnjax as nj
big = {"w": np.random.default_rng(0).random(8 * 2**20).astype(np.float32)}  # 32 MB, fsynced: the save outlasts 50 ms
mngr = nj.checkpoint.CheckpointManager(sys.argv[1], async_save=False)
with nj.checkpoint.PreemptionGuard() as guard:
    print("ready", flush=True)
    while not guard.requested:
        pass
    mngr.save(1, big, force=True)
    mngr.wait_until_finished()
    at_commit = guard.count
    deadline = time.monotonic() + 10
    while guard.count < 2 and time.monotonic() < deadline:  # a loaded machine may deliver the second one late
        time.sleep(0.001)
    print("committed", at_commit, guard.count, flush=True)
mngr.close()
"""


def test_a_second_sigterm_during_the_preemption_save_does_not_kill_it(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", TWO_SIGTERMS, str(tmp_path / "run")], env=child_env(), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, (proc.returncode, out)
    words = out.split()
    assert words[0] == "committed" and words[2] == "2", out  # both signals reached the guard; neither killed the save
    print(f"SIGTERMs received before the commit: {words[1]}")
    restored = nj.checkpoint.restore(tmp_path / "run" / "1", {"w": np.zeros(8 * 2**20, np.float32)})
    assert np.array_equal(np.asarray(restored["w"]), np.random.default_rng(0).random(8 * 2**20).astype(np.float32))


def test_repeated_signals_are_counted_and_ignored_in_process():
    previous = signal.getsignal(signal.SIGTERM)
    with nj.checkpoint.PreemptionGuard() as guard:
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while guard.count < 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert guard.requested and guard.received == signal.SIGTERM and guard.count == 3
    assert signal.getsignal(signal.SIGTERM) is previous
