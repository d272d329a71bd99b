"""nnjax.checkpoint in one process: save/restore, resharding, retention, async errors, corruption, untrusted input.

References are independent of the code under test: host copies taken before a
save (compared bit for bit), the test's own retention rule, its own SHA-256
manifests for crafted checkpoints, and the file system itself.
"""

import errno
import hashlib
import json
import os
import pickle
import random
import shutil
import sys
import tracemalloc

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import nnjax as nj
from nnjax.checkpoint import (
    MANIFEST_NAME,
    CheckpointCorruptError,
    CheckpointManager,
    CheckpointMismatchError,
    CheckpointSaveError,
    UntrustedCheckpointError,
)


def bits(tree):
    """Host copies of every leaf as raw bytes (a bit-for-bit reference)."""
    return [np.array(jax.device_get(leaf)).reshape(-1).view(np.uint8).copy() for leaf in jax.tree.leaves(tree)]


def same_bits(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def tiny_model(seed=0):
    nj.utils.set_random_seed(seed)
    model = nj.Sequential([nj.layers.Dense(8, activation="relu"), nj.layers.Dense(3, activation="softmax")])
    model.build((None, 4))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], seed=seed)
    return model


def tiny_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (np.abs(x[:, :3]).argmax(1)).astype(np.int32)


@pytest.fixture(scope="module")
def trained():
    model = tiny_model()
    x, y = tiny_data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model


def files_of(folder):
    out = []
    for root, _, names in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, n), folder) for n in names]
    return sorted(f for f in out if f != MANIFEST_NAME)


def write_attacker_manifest(folder, step=None):
    """What an attacker who edits a checkpoint would do: recompute every hash (our own SHA-256, not the library's)."""
    files = {}
    for rel in files_of(folder):
        data = open(os.path.join(folder, rel), "rb").read()
        files[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest = json.load(open(os.path.join(folder, MANIFEST_NAME)))
    manifest["files"] = files
    if step is not None:
        manifest["step"] = step
    with open(os.path.join(folder, MANIFEST_NAME), "w") as f:
        json.dump(manifest, f)


# ---------------------------------------------------------------------------- save / restore
def test_save_restore_train_state_bit_for_bit(trained, tmp_path):
    state = trained.state
    reference = bits(state)
    path = nj.checkpoint.save(tmp_path / "ckpt", state, metadata={"epoch": 3, "best": float("inf"), "names": ["a", "b"]})
    assert os.path.isfile(os.path.join(path, MANIFEST_NAME))
    with pytest.raises(FileExistsError, match="already exists"):
        nj.checkpoint.save(tmp_path / "ckpt", state)
    restored, metadata = nj.checkpoint.restore(path, state, return_metadata=True)
    assert type(restored) is type(state) and restored.graphdef is state.graphdef and restored.tx is state.tx
    assert same_bits(bits(restored), reference)
    assert metadata == {"epoch": 3, "best": float("inf"), "names": ["a", "b"]}
    assert nj.checkpoint.read_metadata(path)["epoch"] == 3
    # The manifest lists every other file with its size and SHA-256 (checked here with hashlib).
    manifest = json.load(open(os.path.join(path, MANIFEST_NAME)))
    assert sorted(manifest["files"]) == files_of(path) and manifest["step"] == int(state.step)
    for rel, entry in manifest["files"].items():
        data = open(os.path.join(path, rel), "rb").read()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_save_refuses_unsafe_keys_and_non_json_metadata(tmp_path):
    with pytest.raises(ValueError, match=r"key '\.\.'"):
        nj.checkpoint.save(tmp_path / "a", {"..": np.zeros(2)})
    with pytest.raises(ValueError, match="not allowed"):
        nj.checkpoint.save(tmp_path / "b", {"x/y": np.zeros(2)})
    with pytest.raises(TypeError, match="JSON data"):
        nj.checkpoint.save(tmp_path / "c", {"w": np.zeros(2)}, metadata={"f": object()})
    assert os.listdir(tmp_path) == []


def test_save_weights_load_weights_still_work(trained, tmp_path):
    reference = trained.get_weights()
    trained.save_weights(str(tmp_path / "w"))
    other = tiny_model(seed=5)
    other.load_weights(str(tmp_path / "w"))
    assert all(np.array_equal(a, b) for a, b in zip(other.get_weights(), reference, strict=True))
    with pytest.raises(FileNotFoundError):
        other.load_weights(str(tmp_path / "missing"))


def test_restore_mismatched_target_names_the_array(trained, tmp_path):
    path = nj.checkpoint.save(tmp_path / "ckpt", trained.state)
    bigger = nj.Sequential([nj.layers.Dense(9, activation="relu"), nj.layers.Dense(3)])
    bigger.build((None, 4))
    bigger.compile(optimizer="adam", loss="mse")
    with pytest.raises(CheckpointMismatchError, match=r"array '.*layers/0/bias/value' is stored with shape \(8,\); the target expects \(9,\)"):
        nj.checkpoint.restore(path, bigger.state)
    sgd = tiny_model()
    sgd.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(CheckpointMismatchError, match="not in the"):
        nj.checkpoint.restore(path, sgd.state)


def _data_parallel_target(state, mesh):
    """Kernels whose first axis divides by 4 are split over the mesh; everything else is replicated."""
    def spec(leaf):
        split = leaf.ndim == 2 and leaf.shape[0] % 4 == 0
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=NamedSharding(mesh, P("data") if split else P()))

    return jax.tree.map(spec, state)


def test_restore_onto_four_devices_and_back(trained, tmp_path):
    assert jax.device_count() >= 4
    state = jax.device_put(trained.state, jax.devices()[0])
    reference = bits(state)
    nj.checkpoint.save(tmp_path / "one", state)
    mesh = jax.make_mesh((4,), ("data",))
    sharded = nj.checkpoint.restore(tmp_path / "one", _data_parallel_target(state, mesh))
    assert same_bits(bits(sharded), reference)
    kernel = sharded.params["layers"][0]["kernel"].value  # (4, 8): split over the 4 devices
    assert kernel.sharding.spec == P("data") and len(kernel.sharding.device_set) == 4
    assert {shard.data.shape for shard in kernel.addressable_shards} == {(1, 8)}
    # and back: saved sharded over 4 devices, restored onto one
    nj.checkpoint.save(tmp_path / "four", sharded)
    single = nj.checkpoint.restore(tmp_path / "four", state)
    assert same_bits(bits(single), reference)
    assert {d for leaf in jax.tree.leaves(single) for d in leaf.devices()} == {jax.devices()[0]}


# ---------------------------------------------------------------------------- manager: retention, async, errors
def expected_kept(history, max_to_keep, keep_best, mode):
    """The test's own retention rule: newest, last `max_to_keep`, best `keep_best` finite metrics (newest wins ties)."""
    steps = sorted(history)
    keep = {steps[-1]} | set(steps[-max_to_keep:])
    scored = sorted((v if mode == "min" else -v, -s, s) for s, v in history.items() if v is not None and np.isfinite(v))
    return keep | {s for *_, s in scored[:keep_best]}


@pytest.mark.parametrize("trial", range(4))
def test_retention_random_sequences_keep_latest_and_best(tmp_path, trial):
    rng = random.Random(trial)
    max_to_keep, keep_best, mode = rng.randint(1, 3), rng.randint(0, 2), rng.choice(["min", "max"])
    mngr = CheckpointManager(tmp_path / "run", max_to_keep=max_to_keep, keep_best=keep_best, best_metric="loss" if keep_best else None,
                             best_mode=mode, async_save=bool(trial % 2), fsync=False)
    history, step = {}, 0
    for _ in range(9):
        step += rng.randint(1, 3)
        value = rng.choice([rng.uniform(0, 1), rng.uniform(0, 1), float("nan"), None, 0.5])
        metrics = {} if value is None else {"loss": value}
        assert mngr.save(step, {"w": np.full(3, step, np.float32)}, metrics=metrics)
        history[step] = value
        mngr.wait_until_finished()
        on_disk = {int(n) for n in os.listdir(mngr.directory) if n.isdigit()}
        expected = expected_kept(history, max_to_keep, keep_best, mode)
        assert on_disk == expected == set(mngr.all_steps())
        assert max(history) in on_disk and 1 <= len(on_disk) <= max_to_keep + keep_best
        finite = {s: v for s, v in history.items() if v is not None and np.isfinite(v)}
        if keep_best and finite:
            best = (min if mode == "min" else max)(finite.values())
            assert any(finite.get(s) == best for s in on_disk)
    restored = mngr.restore(target={"w": np.zeros(3, np.float32)})
    assert restored.step == max(history) and np.array_equal(np.asarray(restored.state["w"]), np.full(3, restored.step, np.float32))
    mngr.close()


def test_save_interval_and_duplicates(tmp_path):
    with CheckpointManager(tmp_path, save_interval_steps=5, fsync=False) as mngr:
        saved = [s for s in range(1, 13) if mngr.save(s, {"w": np.zeros(2)})]
        assert saved == [5, 10]
        assert mngr.save(7, {"w": np.zeros(2)}, force=True)
        assert not mngr.save(10, {"w": np.zeros(2)})
    assert CheckpointManager(tmp_path).all_steps() == [5, 7, 10]


def test_async_save_does_not_see_later_donation(trained, tmp_path):
    """The arrays are copied before `save` returns: a step that donates them right after cannot change the checkpoint."""
    state = jax.tree.map(lambda a: a + 0, trained.state)
    reference = bits(state)
    bump = jax.jit(lambda s: jax.tree.map(lambda a: a + 1, s), donate_argnums=0)
    with CheckpointManager(tmp_path, async_save=True) as mngr:
        mngr.save(1, state)
        state = bump(state)
    restored = CheckpointManager(tmp_path).restore(target=trained.state)
    assert same_bits(bits(restored.state), reference)


def _failing_fsync(real, fail):
    def fsync(fd):
        if fail["on"]:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return real(fd)

    return fsync


def test_background_failure_surfaces_at_next_save_and_earlier_checkpoints_stay(tmp_path, monkeypatch):
    fail = {"on": False}
    monkeypatch.setattr(os, "fsync", _failing_fsync(os.fsync, fail))
    mngr = CheckpointManager(tmp_path / "run", max_to_keep=1, async_save=True)
    mngr.save(1, {"w": np.full(4, 1.0, np.float32)})
    mngr.wait_until_finished()
    fail["on"] = True
    assert mngr.save(2, {"w": np.full(4, 2.0, np.float32)})  # returns: the failure happens in the background
    with pytest.raises(CheckpointSaveError, match=r"background save of step 2.*No space left") as info:
        mngr.save(3, {"w": np.full(4, 3.0, np.float32)})
    assert isinstance(info.value.__cause__, OSError) and info.value.step == 2
    assert sorted(os.listdir(mngr.directory)) == [".nnjax-lock", "1"]  # no temporary or half-committed folder left
    fail["on"] = False
    assert mngr.restore(target={"w": np.zeros(4, np.float32)}).step == 1
    fail["on"] = True
    mngr.save(4, {"w": np.full(4, 4.0, np.float32)})
    with pytest.raises(CheckpointSaveError, match="step 4"):
        mngr.close()  # ... or at close, never silently
    fail["on"] = False
    assert CheckpointManager(tmp_path / "run").all_steps() == [1]


def test_foreground_failure_reaches_the_user(tmp_path, monkeypatch):
    nj.checkpoint.save(tmp_path / "good", {"w": np.ones(3, np.float32)})
    fail = {"on": True}
    monkeypatch.setattr(os, "fsync", _failing_fsync(os.fsync, fail))
    with pytest.raises(CheckpointSaveError, match="No space left") as info:
        nj.checkpoint.save(tmp_path / "bad", {"w": np.ones(3, np.float32)})
    assert isinstance(info.value.__cause__, OSError)
    assert sorted(os.listdir(tmp_path)) == ["good"]
    fail["on"] = False
    assert np.array_equal(np.asarray(nj.checkpoint.restore(tmp_path / "good", {"w": np.zeros(3, np.float32)})["w"]), np.ones(3))


def test_interrupted_saves_are_cleaned_up_and_never_listed(tmp_path):
    with CheckpointManager(tmp_path, fsync=False) as mngr:
        mngr.save(1, {"w": np.ones(2)})
    # what a SIGKILL leaves: Orbax's temporary folder, or a renamed folder whose manifest was never written
    # (both carry the marker nnjax writes when a save starts)
    shutil.copytree(tmp_path / "1", tmp_path / "2.orbax-checkpoint-tmp")
    os.remove(tmp_path / "2.orbax-checkpoint-tmp" / MANIFEST_NAME)
    shutil.copytree(tmp_path / "1", tmp_path / "3")
    os.remove(tmp_path / "3" / MANIFEST_NAME)
    for folder in ("2.orbax-checkpoint-tmp", "3"):
        (tmp_path / folder / "nnjax_uncommitted").write_text("")
    mngr = CheckpointManager(tmp_path)
    assert mngr.all_steps() == [1] and sorted(os.listdir(tmp_path)) == [".nnjax-lock", "1"]


# ---------------------------------------------------------------------------- corruption
def _corrupt(path, kind, rng):
    data = open(path, "rb").read()
    if kind == "delete":
        os.remove(path)
    elif kind == "truncate0":
        open(path, "wb").close()
    elif kind == "truncate_half":
        open(path, "wb").write(data[: len(data) // 2])
    else:  # flip one byte
        i = rng.randrange(len(data))
        open(path, "wb").write(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:])


def test_corruption_of_every_file_is_caught_and_falls_back(trained, tmp_path):
    root = tmp_path / "run"
    state = trained.state
    older = jax.tree.map(lambda a: a * 0 + 1 if a.dtype.kind == "f" else a, state)
    with CheckpointManager(root, fsync=False) as mngr:
        mngr.save(10, older)
        mngr.save(20, state)
    pristine = tmp_path / "pristine"
    shutil.copytree(root / "20", pristine)
    rng = random.Random(0)
    files = files_of(pristine)
    assert any(f.startswith("state/") and "/d/" in f for f in files)  # array data files are covered too
    for n, rel in enumerate(files + [MANIFEST_NAME]):
        kind = ["flip", "truncate0", "truncate_half", "delete"][n % 4] if rel != MANIFEST_NAME else "flip"
        shutil.rmtree(root / "20")
        shutil.copytree(pristine, root / "20")
        if kind == "flip" and os.path.getsize(root / "20" / rel) == 0:
            kind = "delete"
        _corrupt(root / "20" / rel, kind, rng)
        mngr = CheckpointManager(root)
        with pytest.raises((CheckpointCorruptError, UntrustedCheckpointError), match="step 20") as info:
            mngr.restore(20, target=state)
        if rel != MANIFEST_NAME:
            assert rel in str(info.value), (rel, kind, str(info.value))
        if n % 5 == 0:  # falling back to the previous good checkpoint (Orbax restore included)
            with pytest.warns(UserWarning, match="skipping step 20"):
                restored = mngr.restore(target=state)
            assert restored.step == 10 and restored.skipped[0][0] == 20
            assert same_bits(bits(restored.state), bits(older))


def test_corrupt_step_is_quarantined_at_the_next_save(tmp_path):
    with CheckpointManager(tmp_path, fsync=False) as mngr:
        mngr.save(1, {"w": np.ones(2, np.float32)})
        mngr.save(2, {"w": np.ones(2, np.float32) * 2})
    data = [f for f in files_of(tmp_path / "2") if "/d/" in f][0]
    _corrupt(tmp_path / "2" / data, "flip", random.Random(1))
    mngr = CheckpointManager(tmp_path, fsync=False)
    with pytest.warns(UserWarning):
        assert mngr.restore(target={"w": np.zeros(2, np.float32)}).step == 1
    with pytest.warns(UserWarning, match="quarantine"):
        mngr.save(2, {"w": np.ones(2, np.float32) * 5})
    mngr.close()
    assert os.listdir(tmp_path / "quarantine") == ["2-0"]
    assert np.array_equal(np.asarray(mngr.restore(target={"w": np.zeros(2, np.float32)}).state["w"]), [5, 5])


# ---------------------------------------------------------------------------- untrusted input
@pytest.fixture
def small_ckpt(tmp_path):
    path = tmp_path / "ckpt"
    nj.checkpoint.save(path, {"w": jax.numpy.arange(12, dtype=np.float32).reshape(3, 4)})
    return path


TARGET = {"w": np.zeros((3, 4), np.float32)}


def _edit_tree_metadata(path, fn):
    meta_file = path / "state" / "_METADATA"
    meta = json.load(open(meta_file))
    fn(meta["tree_metadata"])
    json.dump(meta, open(meta_file, "w"))
    write_attacker_manifest(path)


def _snapshot(root):
    return {os.path.join(r, n): os.stat(os.path.join(r, n)).st_mtime_ns for r, _, ns in os.walk(root) for n in ns}


@pytest.fixture
def no_orbax_restore(monkeypatch):
    """Fails the test if Orbax is asked to read arrays (the refusal must come first)."""
    import orbax.checkpoint as ocp

    def refuse(*args, **kwargs):
        raise AssertionError("Orbax restore was reached")

    monkeypatch.setattr(ocp.Checkpointer, "restore", refuse)


@pytest.mark.parametrize("rel", ["../outside", "/etc/passwd", "state/../../x", "a\\..\\b", "ok/./x", "nul\x00"])
def test_manifest_paths_outside_the_folder_are_refused(small_ckpt, rel, no_orbax_restore):
    manifest = json.load(open(small_ckpt / MANIFEST_NAME))
    manifest["files"][rel] = {"size": 0, "sha256": "0" * 64}
    json.dump(manifest, open(small_ckpt / MANIFEST_NAME, "w"))
    before = _snapshot(small_ckpt.parent)
    with pytest.raises(UntrustedCheckpointError, match="not a plain relative path"):
        nj.checkpoint.restore(small_ckpt, TARGET)
    assert _snapshot(small_ckpt.parent) == before


def test_links_are_refused(small_ckpt, tmp_path, no_orbax_restore):
    victim = tmp_path / "secret.txt"
    victim.write_text("secret")
    data = [f for f in files_of(small_ckpt) if "/d/" in f][0]
    os.remove(small_ckpt / data)
    os.symlink(victim, small_ckpt / data)
    with pytest.raises(UntrustedCheckpointError, match="symbolic link"):
        nj.checkpoint.restore(small_ckpt, TARGET)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["('w',)"]["key_metadata"][0].update(key=".."), "plain names"),
    (lambda t: t["('w',)"]["key_metadata"][0].update(key="/abs"), "plain names"),
    (lambda t: t["('w',)"]["value_metadata"].update(value_type="evil_module_xyz.Payload"), "value type"),
    (lambda t: t["('w',)"]["value_metadata"].update(write_shape=[10**9, 10**9]), "more than the limit"),
    (lambda t: t["('w',)"]["value_metadata"].update(write_shape=[-1, 4]), "non-negative"),
    (lambda t: t["('w',)"]["value_metadata"].update(write_shape="[3, 4]"), "non-negative"),
])
def test_untrusted_tree_metadata_is_refused_before_allocating(small_ckpt, edit, message, no_orbax_restore):
    _edit_tree_metadata(small_ckpt, edit)
    before = _snapshot(small_ckpt.parent)
    tracemalloc.start()
    try:
        with pytest.raises(UntrustedCheckpointError, match=message):
            nj.checkpoint.restore(small_ckpt, TARGET)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # nothing near the claimed 4e18 bytes (or any array) was allocated
    assert _snapshot(small_ckpt.parent) == before
    assert "evil_module_xyz" not in sys.modules


def test_absurd_shape_in_array_store_is_refused(small_ckpt, no_orbax_restore):
    """An attacker rewrites the array's own TensorStore metadata (not just Orbax's JSON) and re-hashes everything."""
    import tensorstore as ts

    spec = {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": f"file://{small_ckpt}/state/", "path": "w/"}}
    if json.load(open(small_ckpt / "state" / "_METADATA"))["use_zarr3"]:
        spec["driver"] = "zarr3"
    ts.open(spec, create=True, delete_existing=True, shape=[10**9, 10**9], dtype=ts.float32).result()
    write_attacker_manifest(small_ckpt)
    with pytest.raises(UntrustedCheckpointError, match=r"\(1000000000, 1000000000\).*more than the limit"):
        nj.checkpoint.restore(small_ckpt, TARGET)


def _mutate_json(node, rng, values):
    for _ in range(rng.randint(0, 4)):
        if isinstance(node, dict) and node:
            node = node[rng.choice(sorted(node))]
        elif isinstance(node, list) and node:
            node = rng.choice(node)
    if isinstance(node, dict) and node:
        key = rng.choice(sorted(node))
        if rng.random() < 0.2:
            del node[key]
        else:
            node[key] = rng.choice(values)
    elif isinstance(node, list) and node:
        node[rng.randrange(len(node))] = rng.choice(values)


def test_metadata_fuzz_gives_clean_errors_or_exact_values(small_ckpt, tmp_path):
    """Random edits of every JSON file Orbax reads (re-hashed, as an attacker would): a clean nnjax error or the exact values."""
    pristine = tmp_path / "pristine"
    shutil.copytree(small_ckpt, pristine)
    json_files = [f for f in files_of(pristine) if f.rsplit("/", 1)[-1].startswith("_") or "array_metadatas" in f or f == "metadata/metadata"]
    assert {"state/_METADATA", "state/_sharding", "state/array_metadatas/process_0", "_CHECKPOINT_METADATA"} <= set(json_files)
    values = [None, -1, 0, 2**70, 1.5, "x", [], {}, [3, 4], [4, 3], [10**12], True, "../../etc", "\x00", [[1]], "jax.Array", "scalar"]
    outcomes = {"refused": 0, "restored": 0}
    for trial in range(40):
        rng = random.Random(trial)
        shutil.rmtree(small_ckpt)
        shutil.copytree(pristine, small_ckpt)
        path = small_ckpt / rng.choice(json_files)
        data = json.load(open(path))
        for _ in range(rng.randint(1, 3)):
            _mutate_json(data, rng, values)
        json.dump(data, open(path, "w"))
        write_attacker_manifest(small_ckpt)
        try:
            restored = nj.checkpoint.restore(small_ckpt, TARGET)
        except (UntrustedCheckpointError, CheckpointCorruptError, CheckpointMismatchError):
            outcomes["refused"] += 1
            continue
        assert np.array_equal(np.asarray(restored["w"]), np.arange(12, dtype=np.float32).reshape(3, 4)), (trial, path)
        outcomes["restored"] += 1
    assert outcomes["refused"] >= 5


def test_restore_imports_nothing_and_never_unpickles(small_ckpt, monkeypatch):
    nj.checkpoint.restore(small_ckpt, TARGET)  # warm-up: Orbax's own lazy imports
    meta_file = small_ckpt / "_CHECKPOINT_METADATA"
    meta = json.load(open(meta_file))
    meta["item_handlers"] = {"state": "evil_handler_mod.Handler", "metadata": "os.system"}
    json.dump(meta, open(meta_file, "w"))
    write_attacker_manifest(small_ckpt)

    attempted = []

    class Recorder:
        def find_spec(self, name, path=None, target=None):
            attempted.append(name)
            return None

    def no_pickle(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler", "dump", "dumps", "Pickler"):
        monkeypatch.setattr(pickle, name, no_pickle)
    sys.meta_path.insert(0, Recorder())
    try:
        restored = nj.checkpoint.restore(small_ckpt, TARGET)
    finally:
        sys.meta_path.pop(0)
    assert attempted == []
    assert "evil_handler_mod" not in sys.modules
    assert np.array_equal(np.asarray(restored["w"]), np.arange(12, dtype=np.float32).reshape(3, 4))
    nj.checkpoint.save(small_ckpt.parent / "again", restored)  # saving needs no pickle either
