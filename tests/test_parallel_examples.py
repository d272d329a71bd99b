"""The parallel examples run and show what they claim (8 forced CPU devices, tests/conftest.py)."""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import data_parallel  # noqa: E402
import ensemble  # noqa: E402
import shard_map  # noqa: E402

TOL = 1e-5


def test_shard_map_and_pmap_examples_equal_data_parallel():
    report = shard_map.main(["--epochs", "1"])
    for name in ("shard_map", "pmap"):
        assert report[name]["loss_diff"] <= TOL, name
        assert report[name]["param_diff"] <= TOL, name
    assert report["data_parallel"]["losses"][0] < np.log(10)  # it learns: below chance level after one epoch


def test_data_parallel_example_with_fsdp(capsys):
    result = data_parallel.main(["--strategy", "fsdp", "--epochs", "1"])
    np.testing.assert_allclose(result["losses"], result["one_device_losses"], rtol=0, atol=TOL)
    assert result["weight_diff"] <= TOL
    assert result["shard_shapes"] == [(64, 256 // 8)]
    assert "16 examples per device per step" in capsys.readouterr().out


def test_ensemble_example_sweep(tmp_path, capsys):
    result = ensemble.main(["--sweep", "--epochs", "2", "--plot", str(tmp_path / "sweep.png")])
    assert result["accuracy"].shape == (4,)
    assert result["history"].curves("val_loss").shape == (2, 4)
    assert result["accuracy"][-1] > result["accuracy"][0]  # lr 1e-2 beats 3e-4 after two epochs
    assert (tmp_path / "sweep.png").stat().st_size > 5000
    assert "lr=0.01: test loss" in capsys.readouterr().out
