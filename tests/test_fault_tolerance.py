"""Real process kills: SIGKILL at random moments (some during async saves), SIGTERM, resharding, a full disk.

Each child (`ckpt_child.py`) runs on one CPU device with XLA on one thread, so a
computation gives the same bits every time (jax#39741). The reference is one
uninterrupted run without any callback. The parent checks, with its own code
(hashlib over the manifest, not the library's verifier), which checkpoints are
committed and intact at the moment of each kill; every restart must restore the
newest of them; every step logged by any run must have the reference loss bit
for bit; the finished run must have the reference weights bit for bit.
"""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("ckpt_child.py")
REPO = CHILD.parent.parent
TOTAL_STEPS = 42  # ckpt_child: 3 epochs of 14 steps
MANIFEST = "nnjax_manifest.json"


def child_env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"  # one device, one thread
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def spawn(tmp, *args):
    out = open(tmp / "child.out", "ab")
    return subprocess.Popen([sys.executable, str(CHILD), *map(str, args)], env=child_env(), stdout=out, stderr=subprocess.STDOUT)


def read_log(path):
    return open(path).read().splitlines() if os.path.exists(path) else []


def intact_steps(backup):
    """Committed checkpoints whose files all match their manifest, checked with hashlib (independently of nnjax)."""
    good = []
    if not os.path.isdir(backup):
        return good
    for name in os.listdir(backup):
        folder = os.path.join(backup, name)
        if not name.isdigit() or not os.path.isfile(os.path.join(folder, MANIFEST)):
            continue
        listed = json.load(open(os.path.join(folder, MANIFEST)))["files"]
        present = {os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs} - {MANIFEST}
        if present == set(listed) and all(
                hashlib.sha256(open(os.path.join(folder, rel), "rb").read()).hexdigest() == entry["sha256"] for rel, entry in listed.items()):
            good.append(int(name))
    return sorted(good)


def in_flight(backup):
    """Evidence of a save caught mid-way: an Orbax temporary folder, or a step folder without its manifest."""
    if not os.path.isdir(backup):
        return False
    names = os.listdir(backup)
    return any(".orbax-checkpoint-tmp" in n or (n.isdigit() and not os.path.exists(os.path.join(backup, n, MANIFEST))) for n in names)


def run_reference(tmp, extra=()):
    proc = spawn(tmp, "train", "--no-backup", "--log", tmp / "log", "--out", tmp / "w.npz", *extra)
    assert proc.wait(timeout=600) == 0, open(tmp / "child.out").read()[-3000:]
    losses = {}
    for line in read_log(tmp / "log"):
        if line.startswith("step "):
            _, step, _, _, loss = line.split()
            losses[int(step)] = loss
    assert sorted(losses) == list(range(1, TOTAL_STEPS + 1))
    return losses, np.load(tmp / "w.npz")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_reference(tmp_path_factory.mktemp("reference"))


ENSEMBLE = ("--ensemble", "3")


@pytest.fixture(scope="module")
def ensemble_reference(tmp_path_factory):
    return run_reference(tmp_path_factory.mktemp("ensemble_reference"), ENSEMBLE)


def check_finished_run(tmp, reference, log_lines):
    losses, weights = reference
    logged = [line.split() for line in log_lines if line.startswith("step ")]
    assert {int(s[1]) for s in logged} == set(range(1, TOTAL_STEPS + 1))  # every step ran, across the restarts
    wrong = [(s[1], s[4], losses[int(s[1])]) for s in logged if s[4] != losses[int(s[1])]]
    assert not wrong, f"per-step losses differ from the uninterrupted run: {wrong[:5]}"
    final = np.load(tmp / "w.npz")
    assert final.files == weights.files
    for name in weights.files:
        assert np.array_equal(final[name].view(np.uint32), weights[name].view(np.uint32)), f"weight {name} differs"


def wait_for_steps(proc, log, count, timeout=300):
    """Waits until the log has `count` lines or the process exits; returns False if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_log(log)) >= count:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    raise TimeoutError(f"the child wrote fewer than {count} log lines in {timeout}s")


def kill_chain(tmp, reference, rng, kills_wanted, mode, corrupt_after=None, extra=()):
    """Runs the child, SIGKILLs it `kills_wanted` times (or until it finishes), then lets it finish. Returns kill stats."""
    backup, log = tmp / "backup", tmp / "log"
    stats = {"kills": 0, "in_flight": 0, "restores": 0, "fallbacks": 0}
    expected = None  # the step the next run must restore (None: start from scratch)
    while True:
        start = len(read_log(log))
        must_restore = expected
        proc = spawn(tmp, "train", "--backup", backup, "--log", log, "--out", tmp / "w.npz", *extra)
        killed = False
        if stats["kills"] < kills_wanted:
            if mode == "anytime" and rng.random() < 0.3:  # startup, restore, compilation included
                try:
                    proc.wait(timeout=rng.uniform(0.5, 8.0))
                except subprocess.TimeoutExpired:
                    pass
            elif wait_for_steps(proc, log, start + 2 + rng.randint(0, 7)):
                time.sleep(rng.uniform(0, 0.1))
                if mode == "during_save":
                    deadline = time.monotonic() + 5
                    while not in_flight(backup) and proc.poll() is None and time.monotonic() < deadline:
                        time.sleep(0.0005)
            corrupt_pending = corrupt_after is not None and stats["kills"] + 1 >= corrupt_after and not stats["fallbacks"]
            if corrupt_pending:  # the fallback needs an older intact step to fall back to: wait for two
                deadline = time.monotonic() + 120
                while len(intact_steps(backup)) < 2 and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed = True
                stats["kills"] += 1
                stats["in_flight"] += in_flight(backup)
                good = intact_steps(backup)  # a corrupted step fails the hash check until the child writes it again
                if corrupt_after is not None and stats["kills"] >= corrupt_after and not stats["fallbacks"] and len(good) >= 2:
                    folder = backup / str(good[-1])
                    data = sorted(p for p in folder.rglob("*") if p.is_file() and p.parent.name == "d")[0]
                    raw = bytearray(data.read_bytes())
                    raw[len(raw) // 2] ^= 0x10
                    data.write_bytes(bytes(raw))
                    good = good[:-1]
                    stats["fallbacks"] += 1
                expected = good[-1] if good else None
        if not killed:
            assert proc.wait(timeout=600) == 0, open(tmp / "child.out").read()[-3000:]
        lines = read_log(log)[start:]
        restored = [line for line in lines if line.startswith("restored ")]
        if restored:
            assert restored[0] == f"restored {must_restore}", (restored[0], must_restore, stats)
            stats["restores"] += 1
            first_step = next(line for line in lines if line.startswith("step ")).split()[1]
            assert int(first_step) == (must_restore or 0) + 1  # resumes right after the restored step: nothing lost, nothing repeated
        if not killed:
            assert lines and lines[-1] == "done"
            check_finished_run(tmp, reference, read_log(log))
            leftovers = sorted(os.listdir(backup)) if backup.exists() else []
            assert leftovers in ([], ["quarantine"])  # deleted at the successful end; a corrupt step moved aside, never lost
            return stats


def run_kills(tmp_path, reference, total, mode, seed, corrupt_after=None, extra=()):
    rng = random.Random(seed)
    totals = {"kills": 0, "in_flight": 0, "restores": 0, "fallbacks": 0}
    chain = 0
    while totals["kills"] < total:
        tmp = tmp_path / f"chain{chain}"
        tmp.mkdir()
        # A fast child can finish a chain before the kill that corrupts: keep asking until one chain has done it.
        stats = kill_chain(tmp, reference, rng, total - totals["kills"], mode, corrupt_after if not totals["fallbacks"] else None,
                           extra)
        totals = {k: totals[k] + stats[k] for k in totals}
        chain += 1
    print(f"\n{mode}: {totals} over {chain} chain(s)")
    return totals


def test_sigkill_at_random_moments_resumes_bit_for_bit(tmp_path, reference):
    totals = run_kills(tmp_path, reference, total=12, mode="anytime", seed=1, corrupt_after=2)
    assert totals["kills"] >= 12 and totals["restores"] >= 4 and totals["fallbacks"] == 1


def test_ensemble_sigkill_at_random_moments_resumes_bit_for_bit(tmp_path, ensemble_reference):
    # Every member's weights and the members' mean loss of every step match an uninterrupted ensemble run, bit for bit.
    totals = run_kills(tmp_path, ensemble_reference, total=6, mode="anytime", seed=4, extra=ENSEMBLE)
    assert totals["kills"] >= 6 and totals["restores"] >= 2


def test_sigkill_during_async_saves_resumes_bit_for_bit(tmp_path, reference):
    totals = run_kills(tmp_path, reference, total=8, mode="during_save", seed=2)
    assert totals["kills"] >= 8 and totals["in_flight"] >= 1 and totals["restores"] >= 4


def test_sigterm_at_random_steps_backs_up_that_step_and_exits_cleanly(tmp_path, reference):
    rng = random.Random(3)
    backup, log = tmp_path / "backup", tmp_path / "log"
    last = 0
    # Round 1 is a SIGTERM in a fresh run, round 2 one in a restored run; a third round would re-test round 2's path.
    for _ in range(2):
        start = len(read_log(log))
        proc = spawn(tmp_path, "train", "--backup", backup, "--log", log, "--out", tmp_path / "w.npz", "--save-freq", "epoch")
        target = rng.randint(last + 1, min(last + 10, TOTAL_STEPS - 2))
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            steps = [int(line.split()[1]) for line in read_log(log)[start:] if line.startswith("step ")]
            if steps and steps[-1] >= target:
                break
            assert proc.poll() is None, open(tmp_path / "child.out").read()[-3000:]
            time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0  # a clean exit
        lines = read_log(log)[start:]
        if last:
            assert lines[0] == f"restored {last}"
        steps = [int(line.split()[1]) for line in lines if line.startswith("step ")]
        assert steps[0] == last + 1  # no step lost, none repeated
        last = steps[-1]
        assert last >= target
        assert intact_steps(backup)[-1] == last  # a backup of the very step that was running
    proc = spawn(tmp_path, "train", "--backup", backup, "--log", log, "--out", tmp_path / "w.npz", "--save-freq", "epoch")
    assert proc.wait(timeout=600) == 0
    assert read_log(log)[-1] == "done"
    check_finished_run(tmp_path, reference, read_log(log))
    assert not backup.exists()


def test_saved_on_one_device_restored_on_four_and_back(tmp_path):
    import jax
    from ckpt_child import build_model
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import nnjax as nj

    proc = spawn(tmp_path, "save-state", "--path", tmp_path / "one", "--out", tmp_path / "one.npz")
    assert proc.wait(timeout=300) == 0, open(tmp_path / "child.out").read()[-3000:]
    expected = np.load(tmp_path / "one.npz")
    assert jax.device_count() >= 4
    mesh = jax.make_mesh((4,), ("data",))
    template = build_model(nj).state

    def spec(leaf):
        split = leaf.ndim == 2 and leaf.shape[1] % 4 == 0
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=NamedSharding(mesh, P(None, "data") if split else P()))

    state = nj.checkpoint.restore(tmp_path / "one", jax.tree.map(spec, template))
    leaves = jax.tree.leaves(state)
    for i, leaf in enumerate(leaves):
        assert np.array_equal(np.asarray(leaf).reshape(-1).view(np.uint8), expected[f"leaf_{i}"].reshape(-1).view(np.uint8))
        assert len(leaf.sharding.device_set) == 4
    assert any(leaf.sharding.spec == P(None, "data") for leaf in leaves)
    nj.checkpoint.save(tmp_path / "four", state)
    proc = spawn(tmp_path, "restore-state", "--path", tmp_path / "four", "--expect", tmp_path / "one.npz")
    assert proc.wait(timeout=300) == 0, open(tmp_path / "child.out").read()[-3000:]
    assert "restored-ok" in open(tmp_path / "child.out").read()


DISK_FULL = """
import os, resource, signal, sys
import numpy as np
import nnjax as nj
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then fails the write with EFBIG
root = sys.argv[1]
big = {"w": np.random.default_rng(0).random(10**6).astype(np.float32)}  # 4 MB, incompressible
mngr = nj.checkpoint.CheckpointManager(os.path.join(root, "run"), async_save=True)
mngr.save(1, {"w": np.arange(1000, dtype=np.float32)})
mngr.wait_until_finished()
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))  # no file may grow past 256 KiB
mngr.save(2, big)
try:
    mngr.save(3, big)
except nj.checkpoint.CheckpointSaveError as err:
    print("ASYNC", err.step, type(err.__cause__).__name__, str(err).replace(chr(10), " ")[-400:])
try:
    nj.checkpoint.save(os.path.join(root, "single"), big)
except nj.checkpoint.CheckpointSaveError as err:
    print("SYNC", type(err.__cause__).__name__, str(err).replace(chr(10), " ")[-400:])
mngr.close()
print("CLOSED")
"""


def test_disk_full_reaches_the_user_and_earlier_checkpoints_stay(tmp_path):
    result = subprocess.run([sys.executable, "-c", DISK_FULL, str(tmp_path)], env=child_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "ASYNC 2 " in out and "File too large" in out, out
    assert "SYNC " in out and "CLOSED" in out, out
    assert sorted(os.listdir(tmp_path)) == ["run"]  # the failed single save left nothing behind
    assert sorted(os.listdir(tmp_path / "run")) == ["1"]  # no temporary folder of step 2 either
    assert intact_steps(tmp_path / "run") == [1]
    import nnjax as nj

    restored = nj.checkpoint.restore(tmp_path / "run" / "1", {"w": np.zeros(1000, np.float32)})
    assert np.array_equal(np.asarray(restored["w"]), np.arange(1000, dtype=np.float32))
