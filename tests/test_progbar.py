"""The progress bar: Keras's look in a terminal, one clean line per epoch when piped, `verbose=2`."""

import io
import re

import numpy as np
import pytest

import nnjax as nj

# fit's lines carry the epoch's throughput after the per-step time; a bare Progbar's do not
BAR_LINE = re.compile(r"^(\d+)/(\d+) [\u2501\u2500]{20} \d+s \d+(?:us|ms|s)/step( - \d+ examples/s)?( - [a-z_]+: \d+\.\d{4})+$")
COMPACT_LINE = re.compile(r"^(\d+)/(\d+) - \d+s - \d+(?:us|ms|s)/step( - \d+ examples/s)?( - [a-z_]+: \d+\.\d{4})+$")


class Terminal(io.StringIO):
    """A stream that says it is a UTF-8 terminal."""

    encoding = "utf-8"

    def isatty(self):
        return True


def data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)


def model():
    m = nj.Sequential([nj.layers.Dense(8, input_shape=(5,), activation="relu"), nj.layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def test_live_bar_redraws_one_line_in_a_terminal():
    stream = Terminal()
    bar = nj.callbacks.Progbar(10, stream=stream, interval=0.0)
    for step in range(1, 10):
        bar.update(step, {"loss": 1.0 / step})
    bar.update(10, {"loss": 0.1}, finalize=True)
    out = stream.getvalue()
    frames = out.split("\r")[1:]
    assert len(frames) == 10 and out.endswith("\n") and out.count("\n") == 1
    assert frames[2].startswith(" 3/10 " + "\u2501" * 6 + "\u2500" * 14)  # 3/10 of a 20-character bar
    assert BAR_LINE.match(frames[-1].rstrip("\n").rstrip()), frames[-1]
    assert "loss: 0.1000" in frames[-1]


def test_fit_verbose_1_in_a_terminal_looks_like_keras():
    x, y = data()
    stream = Terminal()
    model().fit(x, y, batch_size=16, epochs=2, verbose=1, callbacks=[nj.callbacks.ProgbarLogger(verbose=1, stream=stream)])
    out = stream.getvalue()
    assert out.startswith("Epoch 1/2\n")
    lines = [frame.split("\r")[-1].rstrip() for frame in out.split("\n") if frame]
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    for line in (lines[1], lines[3]):
        match = BAR_LINE.match(line)
        assert match and match.group(1) == match.group(2) == "4", line
        assert " - accuracy: " in line and " - loss: " in line and match.group(3)  # the examples/s


@pytest.mark.parametrize("verbose, pattern", [(1, BAR_LINE), (2, COMPACT_LINE)])
def test_piped_output_is_one_readable_line_per_epoch(capsys, verbose, pattern):
    x, y = data()
    model().fit(x, y, batch_size=16, epochs=3, verbose=verbose, validation_split=0.25)
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0::2] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    for line in lines[1::2]:
        assert pattern.match(line), line
        assert line.startswith("3/3 ") and " - val_loss: " in line and " examples/s - " in line


def test_verbose_0_prints_nothing(capsys):
    x, y = data()
    model().fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_progbar_without_a_known_length_and_ascii_streams():
    stream = io.StringIO()  # no encoding: ASCII bar characters
    bar = nj.callbacks.Progbar(4, stream=stream, dynamic=False)
    bar.update(4, {"loss": 0.5}, finalize=True)
    assert stream.getvalue().startswith("4/4 ====================")
    stream = io.StringIO()
    nj.callbacks.Progbar(None, stream=stream, dynamic=False).update(7, {"loss": 2e-5}, finalize=True)
    assert re.match(r"^7/Unknown \d+s \d+(us|ms|s)/step - loss: 2\.0000e-05\n$", stream.getvalue())
