"""`nj.utils`'s dataset utilities against Keras 3 (JAX backend, no TensorFlow): Keras's `format="grain"` datasets and
its own indexing functions are the oracle; `split_dataset`, whose Keras implementation needs TensorFlow (or torch) for
arrays, is compared with Keras's size rule and its documented NumPy behaviour (first / last samples, `random.shuffle`).
Values are copies of the same bytes or integers: compared exactly, except resized images (float32, atol 1e-4)."""

import os
import random
import struct
import zlib

import numpy as np
import pytest

import nnjax as nj

keras = pytest.importorskip("keras")


# ----------------------------------------------------------------------------------- pack / unpack
def test_pack_and_unpack_as_keras():
    x, y, w = np.ones(3), np.zeros(3), np.full(3, 2.0)
    for data in (x, (x,), (x, y), (x, y, w), [x, y], [x]):
        ours, theirs = nj.utils.unpack_x_y_sample_weight(data), keras.utils.unpack_x_y_sample_weight(data)
        assert len(ours) == 3 and all(a is b for a, b in zip(ours, theirs, strict=True))
    for args in ((x,), (x, y), (x, y, w), ((x, y),), ([x],)):
        ours, theirs = nj.utils.pack_x_y_sample_weight(*args), keras.utils.pack_x_y_sample_weight(*args)
        assert type(ours) is type(theirs)
        if isinstance(ours, tuple):
            assert len(ours) == len(theirs) and all(a is b for a, b in zip(ours, theirs, strict=True))
    with pytest.raises(ValueError, match="Data is expected to be in format"):
        nj.utils.unpack_x_y_sample_weight((x, y, w, w))


# ----------------------------------------------------------------------------------- split_dataset
def test_split_dataset_sizes_and_samples_as_keras():
    from keras.src.utils.dataset_utils import _rescale_dataset_split_sizes

    x = np.arange(20).reshape(10, 2)
    y = np.arange(10) * 10
    for left, right in ((0.7, None), (None, 3), (4, 0.3), (0.2, 0.5), (6, None)):
        a, b = nj.utils.split_dataset((x, y), left_size=left, right_size=right)
        n_left, n_right = _rescale_dataset_split_sizes(left, right, 10)
        assert len(a[0]) == n_left and len(b[0]) == n_right
        np.testing.assert_array_equal(a[0], x[:n_left])
        np.testing.assert_array_equal(b[1], y[-n_right:])
    a, b = nj.utils.split_dataset(x, left_size=0.5, shuffle=True, seed=3)
    order = list(range(10))
    random.seed(3)  # what Keras's NumPy path does before slicing
    random.shuffle(order)
    np.testing.assert_array_equal(a, x[order[:5]])
    np.testing.assert_array_equal(b, x[order[-5:]])
    for left, right in ((None, None), (0, 0), (10, None), (0.8, 0.4)):
        with pytest.raises(ValueError):
            nj.utils.split_dataset(x, left_size=left, right_size=right)
        if left is not None or right is not None:
            with pytest.raises(ValueError):
                _rescale_dataset_split_sizes(left, right, 10)


# ----------------------------------------------------------------------------------- timeseries
def _as_lists(dataset):
    return [[np.asarray(part).tolist() for part in (batch if isinstance(batch, tuple) else (batch,))] for batch in dataset]


def _windows(dataset):
    """Every (window, target) of a dataset, one per example."""
    return [tuple(part[i] for part in batch) for batch in _as_lists(dataset) for i in range(len(batch[0]))]


@pytest.mark.parametrize("kwargs", [
    {"sequence_length": 4, "sequence_stride": 2, "sampling_rate": 2, "batch_size": 3},
    {"sequence_length": 5, "batch_size": 4, "start_index": 3, "end_index": 27},
    {"sequence_length": 3, "sequence_stride": 3, "batch_size": 2, "shuffle": True, "seed": 7},
])
def test_timeseries_dataset_as_keras(kwargs):
    data = np.arange(60).reshape(30, 2)
    targets = np.arange(30) * 10
    # Short targets with a start_index crash Keras's grain path (it slices the targets from start_index, then indexes
    # them up to len(targets)); that case is left out.
    for t in (targets, None) + (() if "start_index" in kwargs else (targets[:12],)):
        ours = nj.utils.timeseries_dataset_from_array(data, t, **kwargs)
        theirs = keras.utils.timeseries_dataset_from_array(data, t, **kwargs, format="grain")
        if not kwargs.get("shuffle"):
            assert _as_lists(ours) == _as_lists(theirs)
            continue
        # Shuffled, Keras permutes the starts with np.random.RandomState(seed), then shuffles again with its
        # pipeline's own generator (tf.data or grain): the same windows, in an order only that pipeline makes.
        assert [len(b[0]) for b in _as_lists(ours)] == [len(b[0]) for b in _as_lists(theirs)]
        assert sorted(map(repr, _windows(ours))) == sorted(map(repr, _windows(theirs)))
    with pytest.raises(ValueError, match="sampling_rate"):
        nj.utils.timeseries_dataset_from_array(data, None, 3, sampling_rate=0)


def test_timeseries_dataset_trains_a_model():
    data = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    dataset = nj.utils.timeseries_dataset_from_array(data[:-4], data[4:, 0], sequence_length=4, batch_size=8)
    model = nj.Sequential([nj.Input((4, 3)), nj.layers.Flatten(), nj.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


# ----------------------------------------------------------------------------------- directories
def _png(path, pixels: np.ndarray) -> None:
    """Writes an 8-bit RGB PNG with zlib (no image library needed)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].astype(np.uint8).tobytes() for row in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(1)
    for label, count in (("cat", 4), ("dog", 3), ("emu", 3)):
        os.makedirs(tmp_path / label / ("nested" if label == "dog" else ""), exist_ok=True)
        for i in range(count):
            where = tmp_path / label / ("nested" if label == "dog" and i == 0 else "")
            _png(where / f"{label}_{i}.png", rng.integers(0, 256, size=(6, 5, 3)))
    (tmp_path / "cat" / "notes.md").write_text("not an image")
    return str(tmp_path)


def _collect(dataset):
    xs, ys = zip(*[(np.asarray(b[0]), np.asarray(b[1])) for b in dataset], strict=True)
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("kwargs", [
    {"label_mode": "int", "seed": 4},
    {"label_mode": "categorical", "shuffle": False},
    {"label_mode": "int", "seed": 9, "validation_split": 0.3, "subset": "validation"},
    {"label_mode": "int", "seed": 9, "validation_split": 0.3, "subset": "training", "color_mode": "grayscale"},
    {"label_mode": "binary", "class_names": ["emu", "cat"], "shuffle": False},
])
def test_image_dataset_as_keras(image_folder, kwargs):
    options = {"batch_size": 4, "image_size": (6, 5), "verbose": False, **kwargs}
    ours = nj.utils.image_dataset_from_directory(image_folder, **options)
    theirs = keras.utils.image_dataset_from_directory(image_folder, **options, format="grain")
    x, y = _collect(ours)
    kx, ky = _collect(theirs)
    assert ours.class_names == list(theirs.class_names)
    assert x.shape == kx.shape and x.dtype == np.float32
    _assert_same_examples(x, y, kx, ky, shuffled=options.get("shuffle", True))


def _assert_same_examples(x, y, kx, ky, shuffled: bool):
    """Unshuffled: the same examples in the same order. Shuffled: Keras orders the files by
    np.random.RandomState(seed) (nnjax does the same, so the validation split holds the same files), then its pipeline
    shuffles again with its own generator: the same examples, compared as a set."""
    if not shuffled:
        np.testing.assert_array_equal(x, kx)
        np.testing.assert_array_equal(y, ky)
        return

    def pairs(a, b):
        return sorted((np.asarray(u).tobytes(), np.asarray(v).tobytes()) for u, v in zip(a, b, strict=True))

    assert pairs(x, y) == pairs(kx, ky)


def test_image_dataset_resizes_and_splits_both_ways(image_folder):
    torch = pytest.importorskip("torch")
    options = {"batch_size": 3, "image_size": (9, 4), "seed": 2, "validation_split": 0.2, "subset": "both"}
    train, val = nj.utils.image_dataset_from_directory(image_folder, **options)
    ktrain, kval = keras.utils.image_dataset_from_directory(image_folder, **options, verbose=False, format="grain")
    for ours, theirs in ((train, ktrain), (val, kval)):  # the same files on each side of the split (shuffled again by Keras)
        np.testing.assert_array_equal(np.sort(_collect(ours)[1]), np.sort(_collect(theirs)[1]))
        np.testing.assert_allclose(np.sort(_collect(ours)[0].reshape(-1)), np.sort(_collect(theirs)[0].reshape(-1)),
                                   rtol=0, atol=1e-4)
    # Resizing: bilinear, half-pixel centres, no antialias (tf.image.resize's default), as torch's interpolate computes it.
    from PIL import Image

    original = np.asarray(Image.open(train.file_paths[0]).convert("RGB"), np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(original).permute(2, 0, 1)[None], size=(9, 4),
                                               mode="bilinear", align_corners=False, antialias=False)
    np.testing.assert_allclose(np.asarray(train[0][0][0]), expected[0].permute(1, 2, 0).numpy(), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="seed"):
        nj.utils.image_dataset_from_directory(image_folder, validation_split=0.2, subset="training")


@pytest.fixture
def mixed_size_folder(tmp_path):
    """Images taller, wider and as wide as the target's aspect ratio, so that cropping and padding both act."""
    rng = np.random.default_rng(5)
    for label, shapes in (("a", [(9, 5), (4, 11)]), ("b", [(6, 6), (7, 3)])):
        os.makedirs(tmp_path / label)
        for i, shape in enumerate(shapes):
            _png(tmp_path / label / f"{label}_{i}.png", rng.integers(0, 256, size=(*shape, 3)))
    return str(tmp_path)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "lanczos3", "lanczos5"])
@pytest.mark.parametrize("window", ["plain", "crop", "pad"])
def test_image_dataset_interpolation_and_aspect_ratio_match_keras_resize(mixed_size_folder, interpolation, window):
    # Oracle: keras.ops.image.resize on the JAX backend (what Keras's grain loader calls) on each decoded file.
    from PIL import Image

    aspect = {"crop_to_aspect_ratio": window == "crop", "pad_to_aspect_ratio": window == "pad"}
    ours = nj.utils.image_dataset_from_directory(mixed_size_folder, batch_size=8, image_size=(5, 7), shuffle=False,
                                                 interpolation=interpolation.upper(), **aspect)
    images = np.asarray(ours[0][0])
    assert images.shape == (4, 5, 7, 3) and images.dtype == np.float32
    for image, path in zip(images, ours.file_paths, strict=True):
        decoded = np.asarray(Image.open(path).convert("RGB"), np.float32)
        expected = keras.ops.image.resize(decoded, (5, 7), interpolation=interpolation, antialias=False, **aspect)
        np.testing.assert_allclose(image, np.asarray(expected), rtol=0, atol=1e-4, err_msg=path)


def test_image_dataset_crop_matches_keras_end_to_end_and_refuses_what_keras_jax_refuses(mixed_size_folder):
    options = {"batch_size": 2, "image_size": (4, 6), "shuffle": False, "interpolation": "nearest",
               "crop_to_aspect_ratio": True, "data_format": "channels_first"}
    x, y = _collect(nj.utils.image_dataset_from_directory(mixed_size_folder, **options))
    kx, ky = _collect(keras.utils.image_dataset_from_directory(mixed_size_folder, **options, verbose=False, format="grain"))
    assert x.shape == kx.shape == (4, 3, 4, 6)
    np.testing.assert_allclose(x, kx, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(y, ky)
    for method in ("area", "gaussian", "mitchellcubic"):  # Keras names them; its JAX backend's resize refuses them
        with pytest.raises(ValueError, match="interpolation"):
            keras.ops.image.resize(np.zeros((4, 4, 3), np.float32), (2, 2), interpolation=method)
        with pytest.raises(ValueError, match=rf"interpolation='{method}' is not computed by Keras's JAX backend"):
            nj.utils.image_dataset_from_directory(mixed_size_folder, interpolation=method)
    with pytest.raises(ValueError, match=r"Argument `interpolation` should be one of .*Received: interpolation=cubic"):
        nj.utils.image_dataset_from_directory(mixed_size_folder, interpolation="cubic")
    with pytest.raises(ValueError, match="Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio`"):
        nj.utils.image_dataset_from_directory(mixed_size_folder, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True)


@pytest.fixture
def text_folder(tmp_path):
    texts = {"neg": ["bad film", "dull \u00e9t\u00e9", "awful plot twist"], "pos": ["great", "loved it", "superb acting", "fun"]}
    for label, items in texts.items():
        os.makedirs(tmp_path / label)
        for i, text in enumerate(items):
            (tmp_path / label / f"{i}.txt").write_text(text, encoding="utf-8")
    (tmp_path / "pos" / "skip.csv").write_text("x")
    return str(tmp_path)


@pytest.mark.parametrize("kwargs", [
    {"seed": 5},
    {"shuffle": False, "max_length": 4, "label_mode": "categorical"},
    {"seed": 1, "validation_split": 0.4, "subset": "validation"},
    {"labels": None, "shuffle": False},
])
def test_text_dataset_as_keras(text_folder, kwargs):
    options = {"batch_size": 3, "verbose": False, **kwargs}
    ours = nj.utils.text_dataset_from_directory(text_folder, **options)
    theirs = keras.utils.text_dataset_from_directory(text_folder, **options, format="grain")
    if kwargs.get("labels", "inferred") is None:
        assert [list(np.asarray(b)) for b in ours] == [list(np.asarray(b)) for b in theirs]
        return
    texts, labels = _collect(ours)
    ktexts, klabels = _collect(theirs)
    assert all(isinstance(t, str) for t in texts)
    texts, ktexts = np.asarray([t.encode() for t in texts]), np.asarray([t.encode() for t in ktexts])
    _assert_same_examples(texts, labels, ktexts, klabels, shuffled=options.get("shuffle", True))
    assert ours.class_names == list(theirs.class_names)


def test_set_random_seed_is_keras_name():
    nj.utils.set_random_seed(3)
    first = nj.layers.Dense(2)
    first(np.ones((1, 3), np.float32))
    nj.utils.set_random_seed(3)
    second = nj.layers.Dense(2)
    second(np.ones((1, 3), np.float32))
    np.testing.assert_array_equal(np.asarray(first.kernel[...]), np.asarray(second.kernel[...]))
