"""The API reference site builds from the docstrings (`mkdocs build --strict`, offline), as the README says."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_site_builds_with_the_api_reference(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    layers = (site / "api" / "layers" / "index.html").read_text()
    for name in ("nnjax.layers.Dense", "nnjax.layers.LSTM", "nnjax.layers.Embedding"):
        assert f'id="{name}"' in layers, name
    assert "mask_zero" in layers  # the docstrings' text, not only the names
    callbacks = (site / "api" / "callbacks" / "index.html").read_text()
    assert 'id="nnjax.callbacks.EarlyStopping"' in callbacks and "restore_best_weights" in callbacks
    assert (site / "api" / "models" / "index.html").is_file() and (site / "search" / "search_index.json").is_file()
