"""Host-side text and category preprocessing with `adapt`: StringLookup, IntegerLookup, TextVectorization.

Strings cannot enter a compiled JAX function, so these layers run on the host (NumPy) and give
integer ids or count vectors that a model then takes: apply them to the data before `fit`
(`x = vectorize(texts)`), as Keras does in a `tf.data` pipeline. Their vocabulary is part of
their config (`get_config()["vocabulary"]`), so it is saved with them.

The vocabulary layout and every output mode follow Keras 3 (`keras/src/layers/preprocessing/
index_lookup.py`): in "int" mode, index 0 is the mask token when there is one, then the OOV
indices, then the vocabulary; `adapt` sorts tokens by count, highest first, ties by the token,
highest first (Keras's `np.lexsort(...)[::-1]`). With several OOV indices, an unknown string goes to
`FarmHash64(token) % num_oov_indices` (TensorFlow's `to_hash_bucket_fast`, `nnjax.layers.hash_functions`), an
unknown integer to `value % num_oov_indices`, as Keras.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

from nnjax.layers.base import Layer
from nnjax.layers.hash_functions import fingerprint64

OUTPUT_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")
_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


def _host(where: str, x):
    """`x` as a NumPy array; a traced value (inside jit/grad/vmap) is refused: these layers run on the host."""
    import jax

    if isinstance(x, jax.core.Tracer):
        raise TypeError(
            f"{where} runs on the host (strings and vocabularies are not JAX arrays): apply it to the data before `fit` "
            "(x = layer(data)), not inside a compiled model; received a traced value"
        )
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    return np.asarray(x, dtype=object) if isinstance(x, (list, tuple)) and _has_strings(x) else np.asarray(x)


def _has_strings(x) -> bool:
    for item in x:
        if isinstance(item, (list, tuple)):
            if _has_strings(item):
                return True
        elif isinstance(item, (str, bytes)):
            return True
    return False


def _batches(data) -> Iterable:
    if isinstance(data, (np.ndarray, list, tuple)) or hasattr(data, "shape"):
        yield data
        return
    yield from data


class _IndexLookup(Layer):
    """The shared lookup: a vocabulary, special tokens and Keras's output modes."""

    _checked_axes = ()
    _string_keys = True

    def __init__(self, max_tokens: int | None, num_oov_indices: int, mask_token, oov_token, vocabulary=None,
                 idf_weights=None, invert: bool = False, output_mode: str = "int", pad_to_max_tokens: bool = False,
                 sparse: bool = False, **kwargs):
        super().__init__(**kwargs)
        where = self._where
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"{where}: `output_mode` must be one of {OUTPUT_MODES}; got {output_mode!r}")
        if sparse:
            raise ValueError(f"{where}: `sparse=True` is not supported (nnjax has dense arrays only)")
        if max_tokens is not None and max_tokens <= 1:
            raise ValueError(f"{where}: `max_tokens` must be > 1 or None; got {max_tokens!r}")
        if not isinstance(num_oov_indices, int) or num_oov_indices < 0:
            raise ValueError(f"{where}: `num_oov_indices` must be a non-negative int; got {num_oov_indices!r}")
        if invert and output_mode != "int":
            raise ValueError(f"{where}: `invert=True` needs output_mode='int'; got {output_mode!r}")
        if mask_token is not None and output_mode != "int":
            raise ValueError(f"{where}: `mask_token` is supported with output_mode='int' only; got {output_mode!r}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"{where}: `pad_to_max_tokens=True` needs `max_tokens`")
        self.max_tokens, self.num_oov_indices = max_tokens, num_oov_indices
        self.mask_token, self.oov_token = mask_token, oov_token
        self.invert, self.output_mode, self.pad_to_max_tokens = bool(invert), output_mode, bool(pad_to_max_tokens)
        self.vocabulary: list = []
        self.idf_weights: list | None = None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        elif idf_weights is not None:
            raise ValueError(f"{where}: `idf_weights` needs a `vocabulary`")

    @property
    def _where(self) -> str:
        return f'{type(self).__name__} "{self.name}"'

    # -- vocabulary ---------------------------------------------------------------------
    def _key(self, token):
        return token.decode() if isinstance(token, bytes) else token

    def _oov_start(self) -> int:
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    def _token_start(self) -> int:
        return self._oov_start() + self.num_oov_indices

    def _special(self) -> list:
        special = [self.mask_token] if self._oov_start() else []
        return special + [self.oov_token] * self.num_oov_indices

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        """The tokens by index (with the mask and OOV tokens first, unless `include_special_tokens=False`)."""
        return (self._special() if include_special_tokens else []) + list(self.vocabulary)

    def vocabulary_size(self) -> int:
        """The number of indices, special tokens included."""
        return len(self.get_vocabulary())

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Sets the vocabulary (and, for "tf_idf", one idf weight per token); special tokens at the start are kept."""
        tokens = [self._key(t) for t in (vocabulary.tolist() if isinstance(vocabulary, np.ndarray) else list(vocabulary))]
        special = self._special()
        oov_weight = None
        if special and tokens[: len(special)] == special:  # Keras's get_vocabulary() round trip
            tokens = tokens[len(special):]
            if idf_weights is not None and len(idf_weights) == len(tokens) + len(special):
                oov_weight = float(idf_weights[len(special) - 1])
                idf_weights = list(idf_weights)[len(special):]
        reserved = {t for t in (self.mask_token, self.oov_token) if t is not None}
        clash = [t for t in tokens if t in reserved]
        if clash:
            raise ValueError(f"{self._where}: the vocabulary holds the reserved token(s) {clash} (mask or OOV token) "
                             "outside the leading special positions")
        if len(set(tokens)) != len(tokens):
            repeated = sorted({t for t in tokens if tokens.count(t) > 1}, key=str)
            raise ValueError(f"{self._where}: the vocabulary has repeated tokens {repeated}")
        if self.max_tokens is not None and len(tokens) + self._token_start() > self.max_tokens:
            raise ValueError(f"{self._where}: a vocabulary of {len(tokens)} tokens plus {self._token_start()} special "
                             f"indices exceeds max_tokens={self.max_tokens}")
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError(f"{self._where}: output_mode='tf_idf' needs `idf_weights` with the vocabulary")
            if len(idf_weights) != len(tokens):
                raise ValueError(f"{self._where}: expected {len(tokens)} idf weights (one per token); got {len(idf_weights)}")
            weights = [float(w) for w in idf_weights]
            oov = float(np.mean(weights)) if oov_weight is None and weights else (oov_weight or 0.0)
            self.idf_weights = [oov] * self.num_oov_indices + weights
        self.vocabulary = tokens
        self._index = {t: i + self._token_start() for i, t in enumerate(tokens)}

    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Learns the vocabulary from `data` (an array or list of tokens, or an iterable of batches)."""
        del batch_size, steps
        self._adapt_rows([row for batch in _batches(data) for row in self._tokens(_host(self._where, batch))])

    def _adapt_rows(self, rows: list[list], ignore=()) -> None:
        """The vocabulary of these rows of tokens (a row is a document for "tf_idf"), without `ignore`."""
        counts, documents = Counter(), Counter()
        for row in rows:
            counts.update(row)
            documents.update(set(row))
        for special in (self.mask_token, self.oov_token, *ignore):
            counts.pop(special, None)
        # Keras's order: count, highest first; ties by the token, highest first (np.lexsort((tokens, counts))[::-1]).
        learned = sorted(counts, key=lambda t: (counts[t], t), reverse=True)
        if self.max_tokens is not None:
            learned = learned[: self.max_tokens - self._token_start()]
        idf = None
        if self.output_mode == "tf_idf":
            idf = [math.log(1 + len(rows) / (1 + documents[t])) for t in learned]
        self.set_vocabulary(learned, idf)

    def _tokens(self, array) -> list[list]:
        """The tokens of each row (a 0-D or 1-D input is one row per element for adapt's document counts)."""
        if array.ndim <= 1:
            return [[self._key(t)] for t in np.atleast_1d(array).tolist()]
        return [[self._key(t) for t in row] for row in array.reshape(array.shape[0], -1).tolist()]

    # -- lookup -------------------------------------------------------------------------
    def _ids(self, array) -> np.ndarray:
        flat = array.reshape(-1).tolist()
        ids = np.empty(len(flat), np.int64)
        oov = self._oov_start()
        for i, token in enumerate(flat):
            token = self._key(token)
            if self.mask_token is not None and token == self.mask_token:
                ids[i] = 0
                continue
            index = self._index.get(token)
            if index is None:
                if self.num_oov_indices == 0:
                    raise ValueError(f"{self._where}: with num_oov_indices=0 every input must be in the vocabulary; "
                                     f"found the out-of-vocabulary value {token!r}")
                index = oov + (self._oov_bucket(token) if self.num_oov_indices > 1 else 0)
            ids[i] = index
        return ids.reshape(array.shape)

    def _oov_bucket(self, token) -> int:
        """Keras's OOV index among `num_oov_indices`: FarmHash Fingerprint64 of a string (TensorFlow's
        `to_hash_bucket_fast`), an integer modulo the count."""
        if self._string_keys:
            return fingerprint64(str(token).encode("utf-8")) % self.num_oov_indices
        return int(token) % self.num_oov_indices

    def _inverted(self, array) -> np.ndarray:
        vocab = self.get_vocabulary()
        ids = np.asarray(array).astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(vocab)):
            raise ValueError(f"{self._where}: invert=True expects ids in [0, {len(vocab)}); got ids in [{ids.min()}, {ids.max()}]")
        out = np.empty(ids.shape, dtype=object)
        for index, value in np.ndenumerate(ids):
            out[index] = vocab[value]
        return out

    def _encode(self, ids) -> np.ndarray:
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        if self.output_mode == "one_hot":
            squeezed = ids[..., 0] if ids.ndim > 1 and ids.shape[-1] == 1 else ids
            return np.eye(depth, dtype=np.float32)[squeezed]
        rows = ids.reshape(1, -1) if ids.ndim <= 1 else ids.reshape(ids.shape[0], -1)
        counts = np.zeros((rows.shape[0], depth), np.float32)
        for r, row in enumerate(rows):
            np.add.at(counts[r], row, 1.0)
        if ids.ndim <= 1:
            counts = counts[0]
        if self.output_mode == "multi_hot":
            return (counts > 0).astype(np.float32)
        if self.output_mode == "count":
            return counts
        weights = np.zeros(depth, np.float32)
        weights[: len(self.idf_weights)] = self.idf_weights
        return (counts * weights).astype(np.float32)

    def __call__(self, x, training=None, key=None):
        """Looks up `x` on the host: ids (int32) in "int" mode, or float32 count vectors; tokens with `invert`."""
        array = _host(self._where, x)
        if not self.vocabulary and not self.invert:
            raise ValueError(f"{self._where}: the layer has no vocabulary; pass `vocabulary=` or call `adapt(data)` first")
        if self.invert:
            return self._inverted(array)
        ids = self._ids(array)
        if self.output_mode == "int":
            return ids.astype(np.int32)
        return self._encode(ids)

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        depth = self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()
        if self.output_mode == "one_hot" and len(input_shape) > 1 and input_shape[-1] == 1:
            input_shape = input_shape[:-1]
        return (tuple(input_shape[:1]) if self.output_mode != "one_hot" else tuple(input_shape)) + (depth,)

    def get_config(self) -> dict:
        return {"name": self.name, "max_tokens": self.max_tokens, "num_oov_indices": self.num_oov_indices,
                "mask_token": self.mask_token, "oov_token": self.oov_token, "vocabulary": list(self.vocabulary),
                "idf_weights": None if self.idf_weights is None else self.idf_weights[self.num_oov_indices:],
                "invert": self.invert, "output_mode": self.output_mode, "pad_to_max_tokens": self.pad_to_max_tokens}


class StringLookup(_IndexLookup):
    """Maps strings to integer ids (or count vectors) through a vocabulary, as Keras's `StringLookup`.

    Runs on the host: apply it to the data before `fit`. See the module docstring for the layout.

    Args:
      max_tokens: the largest vocabulary, special indices included (None: no limit).
      num_oov_indices: out-of-vocabulary indices (1; 0 refuses unknown tokens; several hash them with FarmHash).
      mask_token: a padding token mapped to 0 ("int" mode), or None.
      oov_token: returned for OOV ids with `invert=True` ("[UNK]").
      vocabulary: a list of tokens (else `adapt`); idf_weights: their weights for "tf_idf".
      invert: map ids back to tokens.
      output_mode: "int", "one_hot", "multi_hot", "count" or "tf_idf".
      pad_to_max_tokens: count vectors of width `max_tokens`.

    Example:
      >>> layer = nj.layers.StringLookup(vocabulary=["a", "b", "c", "d"])
      >>> layer([["a", "c", "d"], ["d", "z", "b"]]).tolist()
      [[1, 3, 4], [4, 0, 2]]
    """

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]", vocabulary=None,
                 idf_weights=None, invert=False, output_mode="int", pad_to_max_tokens=False, sparse=False,
                 encoding="utf-8", **kwargs):
        if encoding != "utf-8":
            raise ValueError(f"StringLookup: only encoding='utf-8' is supported; got {encoding!r}")
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert, output_mode,
                         pad_to_max_tokens, sparse, **kwargs)


class IntegerLookup(_IndexLookup):
    """Maps integer categories to contiguous ids (or count vectors), as Keras's `IntegerLookup`.

    Runs on the host. With several OOV indices, an unknown value `v` goes to OOV index
    `v mod num_oov_indices` (Keras's rule for integers).

    Args: as `StringLookup`, with `mask_token` None and `oov_token` -1 by default.

    Example:
      >>> layer = nj.layers.IntegerLookup(vocabulary=[12, 36, 1138, 42])
      >>> layer([[12, 1138, 42], [42, 1000, 36]]).tolist()
      [[1, 3, 4], [4, 0, 2]]
    """

    _string_keys = False

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1, vocabulary=None,
                 vocabulary_dtype="int64", idf_weights=None, invert=False, output_mode="int", sparse=False,
                 pad_to_max_tokens=False, **kwargs):
        del vocabulary_dtype  # ids are Python ints on the host
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary, idf_weights, invert, output_mode,
                         pad_to_max_tokens, sparse, **kwargs)

    def _key(self, token):
        return int(token)


class TextVectorization(Layer):
    """Turns strings into token ids or count vectors, as Keras's `TextVectorization`.

    Each string is standardised (lowercased and stripped of punctuation by default), split on
    whitespace, optionally extended with n-grams, and looked up in a vocabulary whose index 0 is
    padding ("") and index 1 the OOV token ("[UNK]"). Runs on the host: apply it to the data
    before `fit`.

    Args:
      max_tokens: the largest vocabulary, padding and OOV included.
      standardize: "lower_and_strip_punctuation", "lower", "strip_punctuation", None or a callable
        on a NumPy array of strings.
      split: "whitespace", "character", None or a callable (string -> list of tokens).
      ngrams: None, an int n (1- to n-grams) or a tuple of widths.
      output_mode: "int" (ids, padded with 0), "multi_hot", "count" or "tf_idf".
      output_sequence_length: "int" mode pads or truncates to this length (else to the longest).
      pad_to_max_tokens, vocabulary, idf_weights: as `StringLookup`.

    Example:
      >>> vectorize = nj.layers.TextVectorization(output_mode="int", output_sequence_length=4)
      >>> vectorize.adapt(["foo bar", "bar baz", "baz bada boom"])
      >>> vectorize([["foo qux bar"], ["qux baz"]]).tolist()
      [[4, 1, 3, 0], [1, 2, 0, 0]]
    """

    _checked_axes = ()

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None,
                 output_mode="int", output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8", **kwargs):
        super().__init__(**kwargs)
        where = f'TextVectorization "{self.name}"'
        if standardize not in (None, "lower_and_strip_punctuation", "lower", "strip_punctuation") and not callable(standardize):
            raise ValueError(f"{where}: unknown `standardize` {standardize!r}")
        if split not in (None, "whitespace", "character") and not callable(split):
            raise ValueError(f"{where}: unknown `split` {split!r}")
        if output_mode not in ("int", "multi_hot", "count", "tf_idf"):
            raise ValueError(f"{where}: `output_mode` must be 'int', 'multi_hot', 'count' or 'tf_idf'; got {output_mode!r}")
        if output_sequence_length is not None and output_mode != "int":
            raise ValueError(f"{where}: `output_sequence_length` applies to output_mode='int' only")
        if ragged or encoding != "utf-8":
            raise ValueError(f"{where}: `ragged=True` and encodings other than utf-8 are not supported")
        if isinstance(ngrams, int):
            ngrams = tuple(range(1, ngrams + 1))
        self.standardize, self.split, self.ngrams = standardize, split, None if ngrams is None else tuple(ngrams)
        self.output_mode, self.output_sequence_length = output_mode, output_sequence_length
        self.max_tokens = max_tokens
        self.lookup = StringLookup(max_tokens=max_tokens, mask_token="" if output_mode == "int" else None,
                                   output_mode=output_mode, pad_to_max_tokens=pad_to_max_tokens, vocabulary=vocabulary,
                                   idf_weights=idf_weights, sparse=sparse, name=f"{self.name}_lookup")

    def _standardized(self, texts: list[str]) -> list[str]:
        if callable(self.standardize):
            return [str(t) for t in np.asarray(self.standardize(np.asarray(texts, dtype=str))).reshape(-1).tolist()]
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            texts = [t.lower() for t in texts]
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            texts = [re.sub(_PUNCTUATION, "", t) for t in texts]
        return texts

    def _split(self, text: str) -> list[str]:
        if self.split is None:
            return [text]
        if self.split == "whitespace":
            return text.split()
        if self.split == "character":
            return list(text)
        return [str(t) for t in self.split(text)]

    def _with_ngrams(self, tokens: list[str]) -> list[str]:
        if self.ngrams is None:
            return tokens
        out = []
        for width in self.ngrams:
            out += [" ".join(tokens[i:i + width]) for i in range(len(tokens) - width + 1)]
        return out

    def _token_lists(self, x) -> list[list[str]]:
        array = _host(f'TextVectorization "{self.name}"', x)
        if array.ndim > 1:
            if array.shape[-1] != 1 or array.ndim > 2:
                raise ValueError(f'TextVectorization "{self.name}": the input must be strings of shape (batch,) or '
                                 f"(batch, 1); received shape {array.shape}")
            array = array[:, 0]
        texts = [t.decode() if isinstance(t, bytes) else str(t) for t in np.atleast_1d(array).tolist()]
        return [self._with_ngrams(self._split(t)) for t in self._standardized(texts)]

    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Learns the vocabulary (and idf weights for "tf_idf") from strings or an iterable of batches of strings."""
        del batch_size, steps
        self.lookup._adapt_rows([row for batch in _batches(data) for row in self._token_lists(batch)], ignore=("",))

    def get_vocabulary(self, include_special_tokens: bool = True) -> list:
        return self.lookup.get_vocabulary(include_special_tokens)

    def vocabulary_size(self) -> int:
        return self.lookup.vocabulary_size()

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        self.lookup.set_vocabulary(vocabulary, idf_weights)

    def __call__(self, x, training=None, key=None):
        """Strings `(batch,)` or `(batch, 1)` -> int32 ids `(batch, T)` or float32 vectors `(batch, vocabulary_size)`."""
        rows = self._token_lists(x)
        if self.output_mode != "int":
            if not self.lookup.vocabulary:
                raise ValueError(f'TextVectorization "{self.name}": no vocabulary; pass `vocabulary=` or call `adapt` first')
            return np.stack([self.lookup._encode(self.lookup._ids(np.array(r, dtype=object))) if r else
                             np.zeros(self.lookup.max_tokens if self.lookup.pad_to_max_tokens else self.vocabulary_size(), np.float32)
                             for r in rows])
        length = self.output_sequence_length or max((len(r) for r in rows), default=0)
        ids = np.zeros((len(rows), length), np.int32)
        for i, row in enumerate(rows):
            looked = self.lookup(np.array(row[:length], dtype=object)) if row else np.zeros(0, np.int32)
            ids[i, : len(looked)] = looked
        return ids

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return (input_shape[0], self.output_sequence_length)
        return (input_shape[0], self.vocabulary_size())

    def get_config(self) -> dict:
        return {"name": self.name, "max_tokens": self.max_tokens,
                "standardize": self.standardize if not callable(self.standardize) else None,
                "split": self.split if not callable(self.split) else None, "ngrams": self.ngrams,
                "output_mode": self.output_mode, "output_sequence_length": self.output_sequence_length,
                "pad_to_max_tokens": self.lookup.pad_to_max_tokens, "vocabulary": self.lookup.get_vocabulary(),
                "idf_weights": None if self.lookup.idf_weights is None else self.lookup.idf_weights[1:]}


__all__ = ["IntegerLookup", "StringLookup", "TextVectorization"]
