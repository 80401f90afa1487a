"""course_lib.tokenizer: the character tokenizer, and GPT-2's BPE against Hugging Face's on a small vocabulary."""

from __future__ import annotations

import json

import pytest
import torch

from course_lib.tokenizer import DEFAULT_ALPHABET, BPETokenizer, CharTokenizer, _bytes_to_unicode


def test_char_ids_by_hand():
    tok = CharTokenizer()
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.vocab_size == 3 + len(DEFAULT_ALPHABET)
    # '1' is the second alphabet character, so id 3 + 1 = 4; '+' is the 11th, id 13.
    assert tok.encode("12+3=") == [1, 4, 5, 13, 6, 16]
    assert tok.encode("a", bos=False, eos=True) == [3 + DEFAULT_ALPHABET.index("a"), 2]


@pytest.mark.parametrize("text", ["", "0", "123+456=579", "the soup was great and warm.", DEFAULT_ALPHABET])
def test_char_round_trip(text):
    tok = CharTokenizer()
    assert tok.decode(tok.encode(text, eos=True)) == text


def test_char_decode_skips_pad_and_bos_and_stops_at_eos():
    tok = CharTokenizer()
    ids = [0, 0, 1] + tok.encode("42", bos=False) + [2] + tok.encode("7", bos=False)
    assert tok.decode(ids) == "42"
    assert tok.decode(ids, stop_at_eos=False) == "427"
    assert tok.decode(torch.tensor(ids)) == "42"


def test_char_errors():
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="alphabet"):
        tok.encode("Hello")  # upper case is not in the alphabet
    with pytest.raises(ValueError, match="vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="repeat"):
        CharTokenizer("aab")
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.zeros(2, 2, dtype=torch.long))


def test_char_batches():
    tok = CharTokenizer()
    ids, mask = tok.encode_batch(["1+1=", "10+10="])
    assert ids.shape == mask.shape == (2, 7)
    assert mask.tolist() == [[0, 0, 1, 1, 1, 1, 1], [1] * 7]
    assert ids[0, :2].tolist() == [0, 0] and ids[0, 2] == tok.bos_id
    comp = torch.tensor([tok.encode("2", bos=False, eos=True) + [0], tok.encode("20", bos=False, eos=True)])
    cmask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert tok.decode_batch(comp, cmask) == ["2", "20"]
    assert tok.token_str(tok.encode(" ", bos=False)[0]) == "␣" and tok.token_str(2) == "<eos>"


# ---------------------------------------------------------------- GPT-2 BPE
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("i", "n"), ("Ġ", "c"), ("a", "t"), ("Ġc", "at"),
          ("1", "2"), ("e", "r"), ("Ġ", "s"), ("Ġs", "at"), ("o", "n"), ("Ġ", "Ġ"), ("'", "s")]


@pytest.fixture(scope="module")
def bpe_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe")
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    for a, b in MERGES:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n", encoding="utf-8")
    return folder, vocab


TEXTS = ["the cat sat on the mat", "The Cat!! 123 + 45 = 168", "héllo wörld ✓", "  two  spaces\nnew\ttab ",
         "it's they're we'll I'd", "a_b __init__ x__", "12312 1212", "", "   "]


def test_bytes_to_unicode_is_a_bijection_without_whitespace():
    table = _bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert not any(c.isspace() for c in table.values())
    assert table[ord(" ")] == "Ġ"  # the mark every GPT-2 word-initial space becomes


def test_bpe_merges_by_hand(bpe_folder):
    folder, vocab = bpe_folder
    tok = BPETokenizer(folder)
    assert tok.encode(" the cat") == [vocab["Ġthe"], vocab["Ġcat"]]
    assert tok.encode("the") == [vocab["t"], vocab["he"]]  # no leading space: "the" is t + he
    assert tok.eos_id == vocab["<|endoftext|>"]


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_matches_transformers(bpe_folder, text):
    transformers = pytest.importorskip("transformers")
    folder, vocab = bpe_folder
    theirs = transformers.GPT2Tokenizer(vocab=vocab, merges=list(MERGES))
    ours = BPETokenizer(folder)
    assert ours.encode(text) == theirs.encode(text)
    assert ours.decode(ours.encode(text)) == text


def test_bpe_rejects_a_folder_without_files(tmp_path):
    with pytest.raises(ValueError, match="vocab.json"):
        BPETokenizer(tmp_path)
