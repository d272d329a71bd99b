"""A full disk at any write of a save: `CheckpointSaveError`, and the previous checkpoint stays loadable.

Two ways to fill the disk, each in a child process: ENOSPC injected at every
Python-level write and fsync of an overwrite, one after the other (Orbax's JSON
files, nnjax's marker and manifest, every fsync); and a real 2 MB tmpfs filled to
several levels, where TensorStore's own writes hit ENOSPC (skipped only where
mounting is not permitted). The reference is the value each checkpoint was
saved with, read back after every failure.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

INJECT = r"""
import builtins, errno, json, os, sys, threading
import numpy as np

state = {"fail_at": None, "n": 0, "record": False}
lock = threading.Lock()
real_open, real_fsync = builtins.open, os.fsync


def event(name):
    with lock:
        if not state["record"]:
            return
        state["n"] += 1
        if state["n"] == state["fail_at"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(name))


class File:
    def __init__(self, f, name):
        self._f, self._name = f, name

    def write(self, data):
        event(self._name)
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def fake_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    return File(f, file) if any(c in mode for c in "wax+") else f


def fake_fsync(fd):
    event(f"fsync({fd})")
    return real_fsync(fd)


builtins.open, os.fsync = fake_open, fake_fsync
import nnjax as nj

root, N = sys.argv[1], 1000


def full(v):
    return {"w": np.full(N, v, np.float32)}


def value(path):
    w = np.asarray(nj.checkpoint.restore(path, {"w": np.zeros(N, np.float32)})["w"])
    assert (w == w[0]).all()
    return int(w[0])


def attempt(save, fail_at):
    state.update(fail_at=fail_at, n=0, record=True)
    try:
        save()
        return "saved"
    except nj.checkpoint.CheckpointSaveError as err:
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        return "error" if "No space left" in str(err) or getattr(cause, "errno", None) == errno.ENOSPC else f"other-cause {cause!r}"
    except BaseException as err:
        return f"BARE {type(err).__name__}: {err}"
    finally:
        state["record"] = False


out = {}
# nj.checkpoint.save overwrites (what Model.save_weights and a fixed-path ModelCheckpoint do)
path = os.path.join(root, "ckpt")
nj.checkpoint.save(path, full(1))
current = 1
state.update(fail_at=None, n=0, record=True)
nj.checkpoint.save(path, full(2), overwrite=True)
state["record"] = False
current, total = 2, state["n"]
rows = []
for i in range(1, total + 1):
    new = current + 1
    outcome = attempt(lambda: nj.checkpoint.save(path, full(new), overwrite=True), i)
    got = value(path)
    rows.append([i, outcome, got == (new if outcome == "saved" else current), sorted(os.listdir(root))])
    current = got
out["save"] = {"writes": total, "rows": rows}

# CheckpointManager, async: forced overwrites of one step, and new steps
run = os.path.join(root, "run")
mngr = nj.checkpoint.CheckpointManager(run, async_save=True, max_to_keep=1)
mngr.save(1, full(1))
mngr.wait_until_finished()
state.update(fail_at=None, n=0, record=True)
mngr.save(1, full(2), force=True)
mngr.wait_until_finished()
state["record"] = False
current, total = 2, state["n"]
rows = []
for i in range(1, total + 1):
    new = current + 1
    def save_and_wait():
        mngr.save(1, full(new), force=True)
        mngr.wait_until_finished()
    outcome = attempt(save_and_wait, i)
    got = value(os.path.join(run, "1"))
    rows.append([i, outcome, got == (new if outcome == "saved" else current), sorted(os.listdir(run))])
    current = got
outcome = attempt(lambda: (mngr.save(2, full(99)), mngr.close()), 1)  # a failure surfacing only at close()
rows.append(["close", outcome, value(os.path.join(run, "1")) == current and mngr.all_steps() == [1], sorted(os.listdir(run))])
out["manager"] = {"writes": total, "rows": rows}
print("RESULT " + json.dumps(out))
"""


def child_env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(script, *args):
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], env=child_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_enospc_at_each_write_of_an_overwrite_raises_checkpoint_save_error_and_keeps_the_previous(tmp_path):
    out = run_child(INJECT, tmp_path)
    for kind, leftovers in (("save", ["ckpt"]), ("manager", [".nnjax-lock", "1"])):
        rows = out[kind]["rows"]
        assert out[kind]["writes"] >= 10  # Orbax's JSON files, the marker, the manifest, the fsyncs
        bad = [r for r in rows if r[1] not in ("saved", "error") or not r[2]]
        assert not bad, f"{kind}: {bad}"
        assert sum(r[1] == "error" for r in rows) >= len(rows) - 2, rows  # (a write whose failure only hits cleanup may pass)
        # Nothing left beside the checkpoint but, at worst, the replacement's own temporary folder, which TensorStore may
        # still be writing to when Orbax reports the failure; the next save removes it.
        dirty = [r for r in rows if r[0] != "close" and r[3] != leftovers]
        assert all(n.startswith(f"{leftovers[-1]}.nnjax-new-") for r in dirty for n in set(r[3]) - set(leftovers)), dirty
        assert rows[-2 if kind == "manager" else -1][3] == leftovers, rows[-2:]
    assert out["manager"]["rows"][-1][1] == "error"  # at close(): CheckpointSaveError, not a bare OSError
    print({k: (v["writes"], sum(r[1] == "error" for r in v["rows"])) for k, v in out.items()})


TMPFS = r"""
import os, sys
import numpy as np
import nnjax as nj

root = sys.argv[1]  # a 2 MB tmpfs
rng = np.random.default_rng(0)
small = rng.random(50_000).astype(np.float32)  # 200 KB, incompressible
path = os.path.join(root, "ckpt")
nj.checkpoint.save(path, {"w": small})
rows = []
for free_kb in (0, 16, 64, 200, 400, 700):
    filler = os.path.join(root, "filler")
    st = os.statvfs(root)
    room = st.f_bavail * st.f_frsize - free_kb * 1024
    with open(filler, "wb") as f:
        while room > 0:
            try:
                room -= f.write(b"\0" * min(room, 1 << 16))
            except OSError:
                break
    big = rng.random(300_000).astype(np.float32)  # 1.2 MB: does not fit
    try:
        nj.checkpoint.save(path, {"w": big}, overwrite=True)
        outcome = "saved"
    except nj.checkpoint.CheckpointSaveError as err:
        outcome = "error"
    except BaseException as err:
        outcome = f"BARE {type(err).__name__}: {err}"
    os.remove(filler)
    got = np.asarray(nj.checkpoint.restore(path, {"w": np.zeros_like(small)})["w"]) if outcome != "saved" else None
    rows.append([free_kb, outcome, got is not None and np.array_equal(got, small), sorted(os.listdir(root))])
mngr = nj.checkpoint.CheckpointManager(os.path.join(root, "run"), async_save=True)
mngr.save(1, {"w": small})
mngr.wait_until_finished()
try:
    mngr.save(2, {"w": rng.random(500_000).astype(np.float32)})
    mngr.close()
    outcome = "saved"
except nj.checkpoint.CheckpointSaveError:
    outcome = "error"
except BaseException as err:
    outcome = f"BARE {type(err).__name__}: {err}"
restored = nj.checkpoint.CheckpointManager(os.path.join(root, "run")).restore(target={"w": np.zeros_like(small)})
rows.append(["manager", outcome, restored.step == 1 and np.array_equal(np.asarray(restored.state["w"]), small),
             sorted(os.listdir(os.path.join(root, "run")))])
import json
print("RESULT " + json.dumps(rows))
"""


def test_real_full_tmpfs_raises_checkpoint_save_error_and_keeps_the_previous(tmp_path):
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        rows = run_child(TMPFS, mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    print(rows)
    for free_kb, outcome, intact, listing in rows[:-1]:
        assert outcome == "error" and intact, (free_kb, outcome)
        assert listing == ["ckpt"], (free_kb, listing)  # the half-written replacement is gone, the filler was removed
    _, outcome, intact, listing = rows[-1]
    assert outcome == "error" and intact and listing == ["1"], rows[-1]
