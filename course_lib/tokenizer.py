"""Tokenizers: text to token ids (the actions of a language-model policy) and back.

``CharTokenizer`` gives every character its own id, plus three special tokens:
``<pad>`` (fills the gaps in a padded batch; never predicted), ``<bos>``
(begins every document, so even an empty prefix is a state) and ``<eos>``
(the action that ends an episode). It is what the course's small GPT-2 uses.

``BPETokenizer`` is GPT-2's byte-level byte-pair encoding (Sennrich et al.,
2016; Radford et al., 2019), read from the ``vocab.json`` and ``merges.txt``
of a local GPT-2 folder, for use with ``GPT.from_pretrained``. Nothing is
downloaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

from .gpt import left_pad

__all__ = ["CharTokenizer", "BPETokenizer", "DEFAULT_ALPHABET"]

# Digits and operators for arithmetic, lowercase letters and a little
# punctuation for sentences. Fixed, so that the vocabulary (and the model's
# output layer) does not depend on which corpus was sampled.
DEFAULT_ALPHABET = "0123456789+-*=abcdefghijklmnopqrstuvwxyz .,:!?'"


class CharTokenizer:
    """One token per character: ids 0, 1, 2 are <pad>, <bos>, <eos>; then the alphabet in order.

    >>> tok = CharTokenizer()
    >>> tok.encode("12+3=")
    [1, 4, 5, 13, 6, 16]
    >>> tok.decode([1, 4, 5, 13, 6, 16, 8, 2, 0])
    '12+3=5'
    """

    pad_id, bos_id, eos_id = 0, 1, 2
    special_tokens = ("<pad>", "<bos>", "<eos>")

    def __init__(self, alphabet: str = DEFAULT_ALPHABET):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet must not repeat a character")
        self.alphabet = alphabet
        self._id = {c: i + len(self.special_tokens) for i, c in enumerate(alphabet)}
        self._chars = list(self.special_tokens) + list(alphabet)

    @property
    def vocab_size(self) -> int:
        return len(self._chars)

    def encode(self, text: str, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of ``text``, with <bos> in front (``bos``) and <eos> at the end (``eos``)."""
        unknown = sorted(set(text) - set(self._id))
        if unknown:
            raise ValueError(f"text contains characters outside the alphabet: {unknown!r}")
        ids = [self._id[c] for c in text]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        """The text of ``ids``: <pad> and <bos> are skipped; everything from <eos> on is dropped."""
        out = []
        for i in _as_list(ids):
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            if i == self.eos_id and stop_at_eos:
                break
            if i >= len(self.special_tokens):
                out.append(self._chars[i])
        return "".join(out)

    def token_str(self, i: int) -> str:
        """A printable name for one token (a space shows as '␣'), for plots and tables."""
        s = self._chars[int(i)]
        return "␣" if s == " " else s

    def encode_batch(self, texts: Sequence[str], bos: bool = True, eos: bool = False, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids (B, T) and attention mask (B, T) for a list of prompts."""
        return left_pad([self.encode(t, bos=bos, eos=eos) for t in texts], self.pad_id, device)

    def decode_batch(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[str]:
        """Decode each row of ``ids`` (B, T), keeping only positions where ``mask`` is 1."""
        rows = ids.tolist()
        masks = mask.tolist() if mask is not None else [[1] * len(r) for r in rows]
        return [self.decode([i for i, m in zip(r, mk) if m]) for r, mk in zip(rows, masks)]


def _as_list(ids) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"ids must be one sequence (1-D); got shape {tuple(ids.shape)}")
        return ids.tolist()
    return [int(i) for i in ids]


# ---------------------------------------------------------------- GPT-2 byte-level BPE
@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters.

    Printable Latin-1 bytes map to themselves; the others (control bytes, space)
    are shifted to code points from 256 up, so that no token contains a space
    or a control character and the BPE merges never see whitespace.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


# GPT-2's pre-tokenizer: contractions, runs of letters, of digits, of other
# symbols, each with an optional leading space; and whitespace. Python's `re`
# has no \p{L} or \p{N}: letters are "word characters that are not digits or
# _", numbers are \d, so rare numerals such as '²' count as letters here.
_PRETOKENIZE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class BPETokenizer:
    """GPT-2's byte-level BPE from a local folder holding ``vocab.json`` and ``merges.txt``.

    encode: text -> UTF-8 bytes -> printable characters -> split into words ->
    in each word, repeatedly merge the adjacent pair that ranks earliest in
    ``merges.txt`` -> look the pieces up in ``vocab.json``.
    """

    def __init__(self, path):
        folder = Path(path)
        if not (folder / "vocab.json").exists() or not (folder / "merges.txt").exists():
            raise ValueError(f"path must be a folder with vocab.json and merges.txt; got {str(path)!r}")
        self.encoder: dict[str, int] = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        self.decoder = {i: s for s, i in self.encoder.items()}
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.eos_id = self.encoder.get("<|endoftext|>")
        self._cache: dict[str, list[str]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get(p, float("inf")), i) for i, p in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == float("inf"):
                break
            first, second = parts[i], parts[i + 1]
            merged, j = [], 0
            while j < len(parts):  # merge every occurrence of this pair, left to right
                if j < len(parts) - 1 and parts[j] == first and parts[j + 1] == second:
                    merged.append(first + second)
                    j += 2
                else:
                    merged.append(parts[j])
                    j += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in _PRETOKENIZE.findall(text):
            mapped = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            for piece in self._bpe(mapped):
                if piece not in self.encoder:
                    raise ValueError(f"piece {piece!r} of {word!r} is not in vocab.json")
                ids.append(self.encoder[piece])
        return ids

    def decode(self, ids) -> str:
        text = "".join(self.decoder[i] for i in _as_list(ids))
        return bytes(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")
