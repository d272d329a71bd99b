"""The tutorial's examples run and show what the tutorial claims."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))

import custom_loop  # noqa: E402
import perceptron  # noqa: E402
import quickstart  # noqa: E402


def test_perceptron_claims():
    results = perceptron.main([])
    assert results["separable"] == 1.0
    assert results["xor_perceptron"] <= 0.75
    assert results["xor_mlp"] == 1.0


def test_quickstart_on_digits(tmp_path, capsys):
    accuracy = quickstart.main(["--dataset", "digits", "--plot", str(tmp_path / "model.png")])
    assert accuracy >= 0.95
    assert (tmp_path / "model.png").stat().st_size > 5000
    out = capsys.readouterr().out
    assert "Epoch 15/15" in out and "Test accuracy on digits" in out


def test_quickstart_auto_falls_back_in_one_clear_line(tmp_path):
    """With no network and no TFDS cache, the quickstart says so in one line and trains on digits."""
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "empty_tfds"), XLA_FLAGS="")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "quickstart.py"), "--epochs", "1", "--plot", ""],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if "Fashion-MNIST is not available" in line]
    if not lines:
        pytest.fail(f"expected the fallback line; stdout was:\n{result.stdout[-2000:]}")
    assert len(lines) == 1 and "training on scikit-learn's digits instead" in lines[0]
    assert "--dataset fashion_mnist` says how to get it" in lines[0] and len(lines[0]) < 200
    assert "Variant folder" not in result.stderr  # no TFDS warning about a folder that does not exist
    assert "Test accuracy on digits" in result.stdout


def test_custom_loop_learns():
    assert custom_loop.main(["--epochs", "8"]) >= 0.9
