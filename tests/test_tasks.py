"""course_lib.tasks: corpora, held-out splits, the verifier and the labeler."""

from __future__ import annotations

import re

import numpy as np
import pytest

from course_lib.tasks import ArithmeticTask, ReviewTask, sum_without_carries
from course_lib.tokenizer import CharTokenizer


# ---------------------------------------------------------------- arithmetic
def test_arithmetic_reward_by_hand():
    task = ArithmeticTask()
    prompts = ["12+345=", "12+345=", "0+0=", "999+1=", "7+8="]
    completions = ["357", "358", "0", "1000", " 15"]
    np.testing.assert_array_equal(task.reward(prompts, completions), [1.0, 0.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="prompt"):
        task.reward(["12-3="], ["9"])
    with pytest.raises(ValueError, match="same length"):
        task.reward(["1+1="], [])


def test_arithmetic_corpus_is_correct_and_never_holds_a_test_pair():
    task = ArithmeticTask(max_digits=3)
    docs = task.corpus(3000, np.random.default_rng(0))
    pairs = []
    for d in docs:
        a, b, c = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", d).groups())
        assert a + b == c, d
        pairs.append((a, b))
    a, b = np.array(pairs).T
    assert not task.is_test(a, b).any()
    tokenizer = CharTokenizer()
    assert max(len(tokenizer.encode(d, eos=True)) for d in docs) == 14  # <bos> 3 + 3 digits, +, =, 4 digits <eos>


def _column_sum_loop(a: int, b: int) -> int:
    """Schoolbook addition on the digit strings, column by column, writing each column's last digit only."""
    x, y = str(a)[::-1], str(b)[::-1]
    digits = [(int(x[i]) if i < len(x) else 0) + (int(y[i]) if i < len(y) else 0) for i in range(max(len(x), len(y)))]
    return int("".join(str(d % 10) for d in reversed(digits)))


def test_sum_without_carries_against_a_loop():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 10**rng.integers(1, 6, size=500)), rng.integers(0, 10**rng.integers(1, 6, size=500))
    got = sum_without_carries(a, b)
    assert got.dtype == np.int64 and got.shape == (500,)
    np.testing.assert_array_equal(got, [_column_sum_loop(x, y) for x, y in zip(a.tolist(), b.tolist())])
    assert sum_without_carries(57, 68) == 15 and sum_without_carries(999, 1) == 990 and sum_without_carries(0, 0) == 0
    no_carry = np.array([all(int(p) + int(q) < 10 for p, q in zip(str(x).zfill(6), str(y).zfill(6))) for x, y in zip(a, b)])
    np.testing.assert_array_equal(got == a + b, no_carry)  # right exactly when no column carries
    with pytest.raises(ValueError, match="whole numbers"):
        sum_without_carries([-1], [3])
    task = ArithmeticTask()
    assert [task.careless_answer(p) for p in ("57+68=", "999+1=", "12+30=")] == ["15", "990", "42"]
    assert task.careless_answer("12+30=") == task.answer("12+30=")  # no carry: the careless writer is right
    with pytest.raises(ValueError, match="prompt"):
        task.careless_answer("12-3=")


def test_a_careless_corpus_forgets_carries_in_its_share_of_documents():
    task = ArithmeticTask(max_digits=3, carry_slip=0.6)
    docs = task.corpus(4000, np.random.default_rng(1))
    slipped = carried = 0
    for d in docs:
        a, b, c = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", d).groups())
        assert c in (a + b, _column_sum_loop(a, b)), d  # right, or the carry-free slip: no other mistake
        if a + b != _column_sum_loop(a, b):  # a sum with a carry: it shows which writer wrote it
            carried += 1
            slipped += c != a + b
    assert carried > 1500 and abs(slipped / carried - 0.6) < 0.04
    # A clean corpus draws nothing extra: carry_slip = 0 gives the very documents it always gave.
    clean, rng, twin = ArithmeticTask(carry_slip=0.0), np.random.default_rng(2), np.random.default_rng(2)
    a, b = clean.pairs(50, twin)
    assert clean.corpus(50, rng) == [f"{x}+{y}={x + y}" for x, y in zip(a.tolist(), b.tolist())]
    assert rng.random() == twin.random()  # the same stream afterwards too: the fast base model is unchanged
    with pytest.raises(ValueError, match="carry_slip"):
        ArithmeticTask(carry_slip=1.5)


def test_arithmetic_splits_are_disjoint_and_the_right_size():
    task = ArithmeticTask(max_digits=2, test_fraction=0.2)
    a, b = np.meshgrid(np.arange(100), np.arange(100))
    held_out = task.is_test(a.ravel(), b.ravel())
    assert 0.17 < held_out.mean() < 0.23
    test_prompts = task.prompts(500, np.random.default_rng(1), "test")
    for p in test_prompts:
        x, y = map(int, re.fullmatch(r"(\d+)\+(\d+)=", p).groups())
        assert task.is_test(x, y)
    train_a, train_b = task.pairs(500, np.random.default_rng(2), "train")
    assert not task.is_test(train_a, train_b).any()


def test_arithmetic_digit_counts_are_uniform():
    task = ArithmeticTask(max_digits=3)
    a, b = task.pairs(6000, np.random.default_rng(3))
    digits = np.char.str_len(a.astype(str))
    counts = np.bincount(digits, minlength=4)[1:] / len(a)
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.03)
    assert a.min() >= 0 and a.max() <= 999


def test_arithmetic_is_reproducible_and_validates():
    task = ArithmeticTask()
    assert task.prompts(20, np.random.default_rng(5)) == task.prompts(20, np.random.default_rng(5))
    assert task.answer("47+385=") == "432"
    with pytest.raises(ValueError, match="max_digits"):
        ArithmeticTask(max_digits=0)
    with pytest.raises(ValueError, match="test_fraction"):
        ArithmeticTask(test_fraction=1.0)
    with pytest.raises(ValueError, match="split"):
        task.prompts(3, np.random.default_rng(0), split="valid")


# ---------------------------------------------------------------- reviews
@pytest.mark.parametrize("completion,score", [
    (" great.", 1.0),
    (" cold.", -1.0),
    (" big.", 0.0),
    (" great and warm and fresh.", 3.0),
    (" rude and tasty.", 0.0),
    (" awful and cold and old.", -2.0),
    (" great and great.", -4.0),  # a repeated adjective is malformed
    (" great", -4.0),  # no full stop
    ("great.", -4.0),  # no space after the prompt
    (" yummy.", -4.0),  # not a known word
    (" good and nice and fun and kind.", -4.0),  # too many adjectives
    ("", -4.0),
])
def test_review_scores_by_hand(completion, score):
    assert ReviewTask().score(completion) == score


def test_review_corpus_is_well_formed_and_balanced():
    task = ReviewTask()
    docs = task.corpus(3000, np.random.default_rng(0))
    scores = []
    for d in docs:
        prompt, completion = task.split_document(d)
        assert re.fullmatch(r"the [a-z]+ was", prompt)
        s = task.score(completion)
        assert s > task.malformed_score, d
        scores.append(s)
    assert abs(np.mean(scores)) < 0.1  # as positive as negative: room to improve
    assert all(len(CharTokenizer().encode(d, eos=True)) <= 48 for d in docs)


def test_review_prompts_split_by_noun():
    task = ReviewTask()
    train = set(task.prompts(300, np.random.default_rng(0), "train"))
    test = set(task.prompts(300, np.random.default_rng(0), "test"))
    assert train and test and not train & test
    assert len(test) == 3


def test_review_preferences():
    task = ReviewTask()
    a = [" great.", " cold.", " big.", " bad"]
    b = [" cold.", " great.", " big.", " bad."]
    p = task.preference_probability(a, b, beta=1.0)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-np.array([2.0, -2.0, 0.0, -3.0]))))
    np.testing.assert_allclose(task.preference_probability(a, b, beta=0.0), 0.5)
    labels = task.label_pairs([" great."] * 4000, [" big."] * 4000, np.random.default_rng(0), beta=1.0)
    assert abs(labels.mean() - 1 / (1 + np.exp(-1.0))) < 0.02
    with pytest.raises(ValueError, match="beta"):
        task.preference_probability(a, b, beta=-1.0)
    with pytest.raises(ValueError, match="malformed_score"):
        ReviewTask(malformed_score=-1.0)


def test_review_reward_is_the_score():
    task = ReviewTask()
    np.testing.assert_array_equal(task.reward(["the soup was"] * 2, [" great.", "x"]), [1.0, -4.0])
