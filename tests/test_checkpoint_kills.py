"""Real SIGKILLs at random moments of checkpoint overwrites: every time, the last committed checkpoint loads.

`ckpt_overwrite_child.py` forks one child per round from a server that imported
nnjax once; each child loads what the previous kill left, then overwrites one
fixed path in a loop (`nj.checkpoint.save(..., overwrite=True)`, or a fixed-path
`ModelCheckpoint(save_freq=1)` during `fit`) until it is SIGKILLed. The oracle is
the child's log alone: `saving X` before and `saved X` after each save, where X
identifies the saved values. After a kill, what loads must be the last `saved`
value, or the one in flight when the kill came; never nothing, never a mix, never
an error.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("ckpt_overwrite_child.py")
REPO = CHILD.parent.parent


def run_server(tmp_path, mode, kills, seed):
    root = tmp_path / mode
    root.mkdir()
    env = dict(os.environ)
    env.update(
        {
            "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
            "JAX_PLATFORMS": "cpu",
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
            # later rounds reuse the first one's compiled programs
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
    )
    result = subprocess.run(
        [sys.executable, str(CHILD), mode, str(root), str(kills), str(seed)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, (root / "log").read_text().splitlines()


def check_log(lines):
    """Replays the log; asserts every load against it. Returns counts."""
    stats = {"kills": 0, "mid_save": 0, "swap_window": 0, "loaded_in_flight": 0, "loads": 0}
    last_saved, in_flight = None, None
    for line in lines:
        _, kind, *rest = line.split(" ", 2)
        value = rest[0] if rest else ""
        if kind == "loaded":
            allowed = {last_saved or "none"} | ({in_flight} if in_flight else set())
            assert value in allowed, f"{line!r}: expected one of {sorted(allowed)} (last saved, in flight)"
            stats["loads"] += 1
            if in_flight is not None and value == in_flight:
                stats["loaded_in_flight"] += 1
                last_saved = in_flight
            in_flight = None
        elif kind == "saving":
            assert in_flight is None, line
            in_flight = value
        elif kind == "saved":
            assert value == in_flight, line
            last_saved, in_flight = value, None
        elif kind == "final-save":
            stats["final"] = True
        elif kind == "killed":
            stats["kills"] += 1
            stats["mid_save"] += in_flight is not None
            stats["swap_window"] += any(n.startswith("ckpt.nnjax-new") and "orbax-checkpoint-tmp" not in n for n in value.split())
        else:
            raise AssertionError(f"unexpected log line {line!r}")
    return stats


@pytest.mark.parametrize(("mode", "kills"), [("save", 15), ("model_checkpoint", 5)])
def test_sigkill_during_overwrites_always_leaves_the_last_committed_checkpoint(tmp_path, mode, kills):
    root, lines = run_server(tmp_path, mode, kills, seed=11)
    stats = check_log(lines)
    print(f"\n{mode}: {stats}")
    assert stats["kills"] == kills and stats["loads"] == kills + 1
    assert stats["mid_save"] >= kills // 2  # most kills land inside a save, not between two
    assert stats.get("final") and sorted(os.listdir(root)) == ["ckpt", "log"]  # a later save removed every leftover
