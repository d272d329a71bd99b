"""TFDS without TensorFlow: Keras-style loaders, streaming sources, clear errors when data is missing.

`tfds.testing.mock_data` fakes `tfds.data_source` (random examples, deterministic per index); a tiny builder
prepared here in array_record format exercises the real, unmocked read path.
"""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nnjax as nj
from nnjax import datasets

tfds = pytest.importorskip("tensorflow_datasets")


class NnjaxTinyDigits(tfds.core.GeneratorBasedBuilder):
    """40 train / 12 test examples: image (4, 4, 1) uint8 filled with the example id, label id % 3."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict(
            {"image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8), "label": tfds.features.ClassLabel(num_classes=3)}
        )
        return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "test": self._generate_examples(40, 52)}

    def _generate_examples(self, low, high):
        for i in range(low, high):
            yield i, {"image": np.full((4, 4, 1), i, np.uint8), "label": i % 3}


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    NnjaxTinyDigits(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


KERAS_SHAPES = {
    "mnist": ((28, 28), ()),
    "fashion_mnist": ((28, 28), ()),
    "cifar10": ((32, 32, 3), (1,)),
    "cifar100": ((32, 32, 3), (1,)),
}


@pytest.mark.parametrize("name", sorted(KERAS_SHAPES))
def test_keras_style_loaders_return_keras_shapes_and_dtypes(name):
    image_shape, label_shape = KERAS_SHAPES[name]
    with tfds.testing.mock_data(num_examples=24):
        (x_train, y_train), (x_test, y_test) = getattr(datasets, name).load_data()
        features = tfds.data_source(name, split="train")
        expected_images = np.stack([np.asarray(features[i]["image"]) for i in range(24)]).reshape((24,) + image_shape)
        expected_labels = np.array([features[i]["label"] for i in range(24)]).reshape((24,) + label_shape)
    for x, y in ((x_train, y_train), (x_test, y_test)):
        assert x.shape == (24,) + image_shape and x.dtype == np.uint8
        assert y.shape == (24,) + label_shape and y.dtype == np.uint8
    np.testing.assert_array_equal(x_train, expected_images)
    np.testing.assert_array_equal(y_train, expected_labels)


def test_cifar100_coarse_labels_and_bad_label_mode():
    with tfds.testing.mock_data(num_examples=30):
        (_, fine), _ = datasets.cifar100.load_data()
        (_, coarse), _ = datasets.cifar100.load_data(label_mode="coarse")
        expected = np.array([tfds.data_source("cifar100", split="train")[i]["coarse_label"] for i in range(30)])
    np.testing.assert_array_equal(coarse[:, 0], expected)
    assert coarse.max() < 20 and fine.max() < 100
    with pytest.raises(ValueError, match='`label_mode` must be "fine" or "coarse"; got \'medium\''):
        datasets.cifar100.load_data(label_mode="medium")


def test_streaming_tfds_source_trains_evaluates_and_predicts_end_to_end():
    def normalise(example):
        image, label = example
        return image.astype(np.float32) / 255.0, label

    with tfds.testing.mock_data(num_examples=96):
        (x, y), _ = datasets.fashion_mnist.load_data()
        train = nj.data.tfds("fashion_mnist", split="train", batch_size=32, seed=4, transform=normalise, num_threads=2)
        # The batches follow the NumPy reference order over the same examples.
        order = np.random.default_rng([4, 1]).permutation(96)
        for k, (bx, by, bw) in enumerate(train.batches(1)):
            idx = order[32 * k : 32 * (k + 1)]
            np.testing.assert_allclose(bx[..., 0], x[idx].astype(np.float32) / 255.0, rtol=0, atol=0)
            np.testing.assert_array_equal(by, y[idx])
            assert bw is None
        model = nj.Sequential(
            [nj.layers.Flatten(), nj.layers.Dense(16, activation="relu"), nj.layers.Dense(10, activation="softmax")]
        )
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], seed=0)
        history = model.fit(
            train,
            epochs=2,
            verbose=0,
            validation_data=nj.data.tfds("fashion_mnist", split="test", batch_size=48, shuffle=False, transform=normalise),
        )
        test = nj.data.tfds("fashion_mnist", split="test", batch_size=40, shuffle=False, transform=normalise)
        loss, accuracy = model.evaluate(test, verbose=0)
        probs = model.predict(test)
    assert len(history.history["loss"]) == 2 and len(history.history["val_loss"]) == 2
    assert probs.shape == (96, 10)
    np.testing.assert_allclose(loss, -np.mean(np.log(probs[np.arange(96), y])), rtol=1e-4)
    np.testing.assert_allclose(accuracy, np.mean(np.argmax(probs, axis=1) == y), rtol=1e-6)


def test_tfds_data_source_objects_and_load_feed_fit():
    with tfds.testing.mock_data(num_examples=40):
        model = nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(10, activation="softmax")])
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", seed=0)
        history = model.fit(tfds.data_source("mnist", split="train"), batch_size=16, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])

        def text_features(example):  # imdb text -> (length, vowel count) features
            text, label = example
            text = str(text)
            return np.array([len(text), sum(c in "aeiou" for c in text)], np.float32), label

        reviews = nj.data.load("imdb_reviews", split="train", batch_size=8, transform=text_features)
        classifier = nj.Sequential([nj.layers.Dense(2, activation="softmax")])
        classifier.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", seed=0)
        assert np.isfinite(classifier.fit(reviews, verbose=0).history["loss"][0])


def test_prepared_array_record_dataset_reads_without_mocks(prepared_dir):
    train = nj.data.tfds("nnjax_tiny_digits", split="train", batch_size=16, seed=2, data_dir=prepared_dir)
    batches = list(train.batches(0))
    assert [len(b[0]) for b in batches] == [16, 16, 8]
    ids = np.concatenate([b[0][:, 0, 0, 0] for b in batches]).astype(np.int64)
    labels = np.concatenate([b[1] for b in batches])
    assert sorted(ids.tolist()) == list(range(40))  # every example once
    np.testing.assert_array_equal(labels, ids % 3)
    # Record `i` of the split (TFDS stores examples in its own order) is at position order[k] of the epoch.
    source = tfds.data_source("nnjax_tiny_digits", split="train", data_dir=prepared_dir)
    order = np.random.default_rng([2, 0]).permutation(40)
    np.testing.assert_array_equal(ids, [int(source[int(i)]["image"][0, 0, 0]) for i in order])
    with pytest.raises(ValueError, match="cannot open split 'validation'.*available splits: \\['test', 'train'\\]"):
        nj.data.tfds("nnjax_tiny_digits", split="validation", data_dir=prepared_dir)


def test_missing_dataset_fails_within_seconds_naming_the_folder_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("nnjax.data.tfds_source.network_available", lambda *args, **kwargs: False)
    start = time.perf_counter()
    with pytest.raises(nj.data.DatasetUnavailableError) as info:
        datasets.fashion_mnist.load_data(data_dir=str(tmp_path))
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "'fashion_mnist'" in message and str(tmp_path) in message and "no network" in message
    assert "tfds build fashion_mnist --file_format=array_record" in message
    assert f"copy the folder ~/tensorflow_datasets/fashion_mnist to {tmp_path}/fashion_mnist" in message
    with pytest.raises(nj.data.DatasetUnavailableError, match="cannot be downloaded: download=False"):
        nj.data.tfds("mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="TFDS has no dataset named 'no_such_dataset_xyz'"):
        nj.data.tfds("no_such_dataset_xyz", data_dir=str(tmp_path))


def test_empty_split_raises_naming_it():
    with tfds.testing.mock_data(num_examples=0):
        with pytest.raises(
            ValueError, match="TFDS dataset 'mnist' split 'test' is empty: expected at least one example; received 0"
        ):
            nj.data.tfds("mnist", split="test")


@pytest.mark.slow
def test_nothing_imports_tensorflow():
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import tensorflow_datasets as tfds
        import nnjax as nj
        from nnjax import datasets

        with tfds.testing.mock_data(num_examples=32):
            (x, y), _ = datasets.cifar10.load_data()
            train = nj.data.tfds("mnist", split="train", batch_size=16, seed=0,
                                 transform=lambda ex: (ex[0].astype(np.float32) / 255.0, ex[1]))
            model = nj.Sequential([nj.layers.Flatten(), nj.layers.Dense(10, activation="softmax")])
            model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", seed=0)
            model.fit(train, epochs=1, verbose=0)
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        print("TF_MODULES", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TF_MODULES []" in result.stdout
