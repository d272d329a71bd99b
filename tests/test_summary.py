"""`model.summary(expand_nested=..., show_trainable=..., layer_range=..., line_length=..., positions=...)` against Keras 3.

Oracle: Keras's own summary of the same model, parsed into rows (name and type, output shape, parameter
count, connections, trainable mark) and totals; the box drawing is not compared.
"""

import re

import pytest

import nnjax as nj

keras = pytest.importorskip("keras")


def _keras_rows(model, **kwargs):
    printed = []
    model.summary(print_fn=lambda text, **_: printed.append(text), line_length=160, **kwargs)
    text = "\n".join(printed)
    rows = []
    for line in text.splitlines():
        if line.startswith("│") and "Layer (type)" not in line:
            cells = line.strip("│").split("│")
            depth = cells[0].index("└") - 1 if "└" in cells[0] else 0
            rows.append((depth, *(" ".join(cell.split()) for cell in cells)))
    return rows, _totals(text)


def _nnjax_rows(model, **kwargs):
    printed = []
    assert model.summary(print_fn=printed.append, **kwargs) is None
    text = "\n".join(printed)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Layer (type)"))
    rows = []
    for line in lines[header + 1 :]:
        if not line or line[0] in "\u2500\u2501" or line.startswith(" Total"):
            if line.startswith(" Total"):
                break
            continue
        depth = line.index("└") if "└" in line else 0
        rows.append((depth, *re.split(r"\s{2,}", line.strip())))
    return rows, _totals(text)


def _totals(text):
    return [
        int(re.search(rf"{kind} params: ([\d,]+)", text).group(1).replace(",", ""))
        for kind in ("Total", "Trainable", "Non-trainable")
    ]


def _sequentials(lib):
    inner = lib.Sequential(
        [lib.layers.Dense(4, name="d1"), lib.layers.BatchNormalization(name="bn"), lib.layers.Dense(3, name="d2")], name="inner"
    )
    if lib is keras:
        layers = [keras.Input((5,)), keras.layers.Dense(6, name="first")]
    else:
        layers = [nj.layers.Dense(6, name="first", input_shape=(5,))]
    outer = lib.Sequential([*layers, inner, lib.layers.Dense(2, name="last")], name="outer")
    if lib is nj:
        outer.build((None, 5))
    outer.get_layer("first").trainable = False
    return outer


def _functionals(lib):
    a, fi = lib.Input((3,), name="a"), lib.Input((3,), name="fi")
    inner = lib.Model(fi, lib.layers.Dense(2, name="fd")(fi), name="finner")
    h = lib.layers.Dense(3, name="h")(a)
    return lib.Model(a, lib.layers.Add(name="add")([inner(h), lib.layers.Dense(2, name="skip")(h)]), name="func")


@pytest.mark.parametrize("build", [_sequentials, _functionals])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(expand_nested=True, show_trainable=True),
        dict(expand_nested=False),
        dict(expand_nested=True, layer_range=["first|h", "inner|finner"]),
    ],
)
def test_summary_rows_match_keras(build, kwargs, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # Keras's rich table shrinks to the terminal's width otherwise
    theirs, mine = _keras_rows(build(keras), **kwargs), _nnjax_rows(build(nj), **kwargs)
    assert mine == theirs


def test_layer_range_and_positions_errors_name_the_problem():
    model = _sequentials(nj)
    with pytest.raises(ValueError, match=r"do not match the layer names.*\['d1', 'last'\].*\['first', 'inner', 'last'\]"):
        model.summary(layer_range=["d1", "last"])  # a nested layer is not a top-level one (Keras's rule)
    with pytest.raises(ValueError, match="length 2"):
        model.summary(layer_range=["first"])
    with pytest.raises(ValueError, match=r"`positions` must give 3 column ends.*received 2"):
        model.summary(positions=[0.5, 1.0])
    printed = []
    model.summary(line_length=40, positions=[0.5, 0.8, 1.0], print_fn=printed.append)
    lines = printed[0].splitlines()
    assert all(len(line) <= 40 for line in lines) and lines[1] == "\u2501" * 40
