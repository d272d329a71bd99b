"""`plot_model` draws a functional model as its graph (a DAG), a Sequential as a chain, with Keras's arguments."""

import pytest

import nnjax as nj
from nnjax.viz.plot_model import model_graph

L = nj.layers
PNG = b"\x89PNG\r\n\x1a\n"


def router():
    """Two inputs, two branches merged, two outputs (the functional guide's shape of model)."""
    title, tags = nj.Input((8,), name="title"), nj.Input((4,), name="tags")
    merged = L.Concatenate(name="cat")([L.Dense(6, activation="relu", name="d1")(title), L.Dense(6, name="d2")(tags)])
    return nj.Model([title, tags], [L.Dense(2, name="p")(merged), L.Dense(1, activation="sigmoid", name="q")(merged)],
                    name="router")


def test_functional_model_is_drawn_as_its_dag(tmp_path):
    graph = {node.name: node for node in model_graph(router())}
    parents = {name: [p.split(":")[-1] for p in node.inputs] for name, node in graph.items()}
    assert parents == {"title": [], "tags": [], "d1": ["title"], "d2": ["tags"], "cat": ["d1", "d2"], "p": ["cat"],
                       "q": ["cat"]}
    assert graph["q"].activation == "sigmoid" and graph["cat"].output_shape == (None, 12)
    assert graph["d1"].params == 8 * 6 + 6
    for rankdir in ("TB", "LR"):
        path = nj.utils.plot_model(router(), to_file=str(tmp_path / f"{rankdir}.png"), rankdir=rankdir,
                                   show_layer_activations=True, show_dtype=True, dpi=60)
        assert open(path, "rb").read(8) == PNG


def test_sequential_is_a_chain_and_nested_models_can_be_expanded(tmp_path):
    inner = nj.Sequential([L.Dense(4, activation="relu"), L.Dense(3)], name="block")
    model = nj.Sequential([L.Flatten(input_shape=(2, 3)), inner, L.Dense(2)])
    model.build((None, 2, 3))
    graph = model_graph(model)
    assert [n.inputs for n in graph[1:]] == [[g.id] for g in graph[:-1]]
    nested = next(n for n in graph if n.name == "block")
    assert len(nested.sublayers) == 2 and "Dense" in nested.sublayers[0]
    assert open(nj.plot_model(model, to_file=str(tmp_path / "m.png"), expand_nested=True), "rb").read(8) == PNG


def test_bad_rankdir_is_refused():
    with pytest.raises(ValueError, match=r'`rankdir` must be "TB" or "LR"; got \'BT\''):
        nj.plot_model(router(), rankdir="BT")
