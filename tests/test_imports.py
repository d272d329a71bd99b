"""`import nnjax` needs only jax, flax, optax and orbax; heavy packages load where they are used."""

import subprocess
import sys
import textwrap


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "XLA_FLAGS": "", "HOME": "/tmp"})


def test_import_is_light():
    result = run_python("""
        import sys
        import nnjax
        heavy = [m for m in ("tensorflow", "tensorflow_datasets", "matplotlib", "keras", "torch", "grain") if m in sys.modules]
        print("HEAVY", heavy)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAVY []" in result.stdout, result.stdout


def test_trains_without_tensorflow_datasets_installed():
    result = run_python("""
        import sys
        sys.modules["tensorflow_datasets"] = None  # as if not installed: any import raises ImportError
        sys.modules["tensorflow"] = None
        import numpy as np
        import nnjax as nj
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 4)).astype("float32")
        y = (x[:, 0] > 0).astype("int32")
        model = nj.Sequential([nj.layers.Dense(8, activation="relu"), nj.layers.Dense(2, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=2, verbose=0)
        print("OK", model.evaluate(x, y, verbose=0)[1] > 0)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK True" in result.stdout
