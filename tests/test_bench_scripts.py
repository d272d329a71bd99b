"""Smoke tests: each benchmark script runs at a tiny size and prints valid JSON; the README generator renders it.

Not timed: the numbers of a tiny run on a shared CI machine mean nothing. Baselines
that are not installed (Keras, PyTorch) must be reported as skipped, never faked.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
TINY = {
    "mlp": ["--examples", "300", "--rounds", "1", "--epochs", "1"],
    "cnn": ["--examples", "64", "--batch-size", "32", "--widths", "8,16,16", "--rounds", "1", "--epochs", "1",
            "--steps-per-execution", "2", "--contenders", "nnjax_fit,nnjax_fit_spe,nnjax_core_loop,torch_eager"],
    "gpt": ["--steps", "2", "--epochs", "1", "--batch-size", "4", "--context", "16", "--vocab", "64"],
    "overhead": ["--rounds", "1", "--calls", "20", "--conv-steps", "4"],
}  # fmt: skip


def run_script(name: str, tmp_path) -> dict:
    out = tmp_path / f"{name}.json"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user runs it
    # XLA's cheap pipeline: a smoke run's time is compilation, and its numbers are not checked.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, os.path.join(BENCH, f"{name}.py"), *TINY[name], "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)  # stdout is exactly one JSON document
    assert printed == json.loads(out.read_text())
    return printed


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_schema(result: dict, name: str, contenders: list[str]) -> dict:
    assert result["benchmark"] == name and result["schema"] == 1
    assert result["command"].split()[1].endswith(f"benchmarks/{name}.py")
    for key in ("date", "machine", "device", "versions", "config", "ratios", "notes"):
        assert key in result
    rows = {r["name"]: r for r in result["results"]}
    assert list(rows) == contenders
    for row in rows.values():
        assert row["status"] in ("ok", "skipped"), row
        if row["status"] == "skipped":
            assert row["reason"]
    return rows


@pytest.mark.slow  # a subprocess that imports and compiles every contender
def test_mlp_script(tmp_path):
    result = run_script("mlp", tmp_path)
    rows = check_schema(
        result, "mlp", ["nnjax_fit", "nnjax_fit_spe", "jax_loop", "jax_scan", "keras_fit", "keras_fit_spe", "torch_eager"]
    )
    for name in ("nnjax_fit", "nnjax_fit_spe", "jax_loop", "jax_scan"):
        assert rows[name]["status"] == "ok" and rows[name]["epoch_s"] > 0 and rows[name]["compiles_after_warmup"] == 0
    assert (rows["keras_fit"]["status"] == "ok") == installed("keras")
    assert (rows["torch_eager"]["status"] == "ok") == installed("torch")
    # Same initial weights, same examples: after one epoch the losses of nnjax and the hand loop agree closely.
    assert rows["nnjax_fit"]["final_loss"] == pytest.approx(rows["jax_loop"]["final_loss"], rel=1e-3)
    assert result["config"]["flops_per_step"] > 0
    assert "nnjax_fit vs jax_loop (wall)" in result["ratios"]


@pytest.mark.slow  # a subprocess that imports and compiles every contender
def test_cnn_script(tmp_path):
    result = run_script("cnn", tmp_path)
    rows = check_schema(result, "cnn", ["nnjax_fit", "nnjax_fit_spe", "nnjax_core_loop", "torch_eager"])
    for name in ("nnjax_fit", "nnjax_fit_spe", "nnjax_core_loop"):
        assert rows[name]["status"] == "ok" and rows[name]["steps_per_s"] > 0 and rows[name]["compiles_after_warmup"] == 0
    assert (rows["torch_eager"]["status"] == "ok") == installed("torch")
    assert result["config"]["flops_per_step"] > 0 and result["config"]["precision"] == "float32"


@pytest.mark.slow  # a subprocess that imports and compiles every contender
def test_gpt_script(tmp_path):
    result = run_script("gpt", tmp_path)
    rows = check_schema(result, "gpt", ["nnjax_fit", "nnjax_fit_spe", "nnjax_core_loop"])
    for row in rows.values():
        assert row["status"] == "ok" and row["tokens_per_s"] > 0 and row["compiles_after_warmup"] == 0
        assert row["mfu"] is None  # no peak FLOP/s is known for a CPU
    config = result["config"]
    # 6 N + 12 L d T with N = parameters without the position embedding (context x width)
    n = config["params"] - config["context"] * config["width"]
    assert config["flops_per_token_analytic"] == 6 * n + 12 * config["layers"] * config["width"] * config["context"]


@pytest.mark.slow  # a subprocess that imports and compiles every contender
def test_overhead_script(tmp_path):
    result = run_script("overhead", tmp_path)
    assert result["benchmark"] == "overhead"
    names = [r["name"] for r in result["results"]]
    for prefix in ("dispatch/", "step/", "conv/", "fit_call/"):
        assert any(n.startswith(prefix) for n in names), names
    assert all(r["status"] == "ok" and r["cpu_us_per_call"] > 0 for r in result["results"])
    assert len(result["ratios"]) == 5


def test_make_readme_renders_any_result_and_checks_freshness(tmp_path):
    sys.path.insert(0, BENCH)
    try:
        import make_readme
    finally:
        sys.path.remove(BENCH)
    results = tmp_path / "results"
    results.mkdir()
    schema1 = {"benchmark": "demo", "date": "2025-01-02T03:04:05+00:00", "command": "python benchmarks/demo.py",
               "machine": {"cpu": "Test CPU", "cpu_count": 2, "system": "Linux"}, "device": {"platform": "cpu", "device_kind": "cpu", "device_count": 1},
               "versions": {"jax": "0.0.1"}, "config": {"batch_size": 128}, "ratios": {"a vs b": 1.23456},
               "results": [{"name": "a", "status": "ok", "epoch_s": 0.5, "samples": [1, 2]}, {"name": "b", "status": "skipped", "reason": "not installed"}],
               "notes": ["hello"]}  # fmt: skip
    (results / "demo.json").write_text(json.dumps(schema1))
    (results / "other.json").write_text(json.dumps({"speedup": 2.5, "what": "free-form"}))
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nProse kept.\n\n" + make_readme.BEGIN + "\nold\n" + make_readme.END + "\n\nTail kept.\n")
    assert make_readme.main(["--results", str(results), "--readme", str(readme), "--check"]) == 1
    assert make_readme.main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Benchmarks\n\nProse kept.") and text.endswith("Tail kept.\n") and "\nold\n" not in text
    assert "### demo (`results/demo.json`)" in text and "Test CPU" in text and "`python benchmarks/demo.py`" in text
    assert "| name | status | epoch_s | reason |" in text and "| a | ok | 0.5 |  |" in text
    assert "| b | skipped |  | not installed |" in text and "| a vs b | 1.235 |" in text and "- hello" in text
    assert "### other (`results/other.json`)" in text and "| speedup | 2.5 |" in text
    assert make_readme.main(["--results", str(results), "--readme", str(readme), "--check"]) == 0
