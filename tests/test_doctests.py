"""The docstrings' examples run as tests (doctest), so the documentation shows code that works.

Each docstring's examples run in a fresh namespace, in a temporary working folder, with
`nj`, `np`, `jnp`, `jax`, `nnx` and the data most examples use: `x`, `y` (64 examples of 8
features, labels 0-2), `x_test`, `y_test` (16 more) and `model`, a built and compiled
classifier (Dense 16 relu -> Dense 3 softmax, Adam, sparse categorical cross-entropy, accuracy).
Examples that need the network or several processes are marked `# doctest: +SKIP`, with the
reason on the line before.
"""

import doctest
import importlib
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import nnjax as nj


def _docstring_tests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    seen = set()
    for info in pkgutil.walk_packages(nj.__path__, "nnjax."):
        module = importlib.import_module(info.name)
        for test in finder.find(module):
            if test.examples and test.name not in seen and test.name.startswith(info.name):
                seen.add(test.name)
                yield test


TESTS = sorted(_docstring_tests(), key=lambda t: t.name)


def namespace(test) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 8)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1).astype(np.int32)
    names = {"nj": nj, "np": np, "jnp": jnp, "jax": jax, "nnx": nnx, "x": x[:64], "y": y[:64], "x_test": x[64:],
             "y_test": y[64:]}
    if any("model" in example.source for example in test.examples):  # built only where an example uses it
        nj.utils.set_random_seed(0)
        model = nj.Sequential([nj.layers.Dense(16, activation="relu"), nj.layers.Dense(3, activation="softmax")])
        model.build((None, 8))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        names["model"] = model
    return names


def test_there_are_docstring_examples():
    assert len(TESTS) > 100


@pytest.mark.parametrize("test", TESTS, ids=lambda t: t.name)
def test_docstring_examples_run(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test.globs = namespace(test)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
