"""Synthetic tasks that give the RL chapters something real to improve.

Each task produces three things:

* a **pretraining corpus**: documents ``prompt + completion`` that teach the
  base model the format (and, imperfectly, the skill);
* **prompts**: the states an episode starts from, split into a train and a
  held-out test set;
* a **reward**: one number per (prompt, completion), given at the end of the
  episode.

``ArithmeticTask`` has a programmatic verifier: "12+345=" must be completed
with "357". ``ReviewTask`` has a preference encoded by a labeler function:
of two continuations of "the soup was", the labeler prefers the more positive
well-formed sentence ("great and warm." over "cold.").

Completions are the text the policy wrote after the prompt, up to its <eos>
(``CharTokenizer.decode`` stops there).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["ArithmeticTask", "ReviewTask", "sum_without_carries"]


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed, well-scrambled hash of uint64s (Steele et al., 2014)."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def sum_without_carries(a, b) -> np.ndarray:
    """Column-wise addition that forgets every carry: each digit is (digit of a + digit of b) mod 10.

    The classic slip of a careless writer: 57 + 68 -> 15 (7 + 8 = 15, write 5, forget the 1;
    5 + 6 = 11, write 1, forget the 1). Equal to a + b exactly when no column carries.
    Vectorised over arrays of whole numbers; returns int64 of their broadcast shape.

    >>> sum_without_carries([57, 999, 12], [68, 1, 30]).tolist()
    [15, 990, 42]
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if (a < 0).any() or (b < 0).any():
        raise ValueError("a and b must be whole numbers (>= 0)")
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.int64)
    place = 1
    while (a > 0).any() or (b > 0).any():
        out += (a % 10 + b % 10) % 10 * place
        a, b, place = a // 10, b // 10, place * 10
    return out


class ArithmeticTask:
    """Addition of two whole numbers with 1 to ``max_digits`` digits: "47+385=" -> "432".

    Each operand's number of digits is drawn uniformly from 1..max_digits and
    then its value uniformly among the numbers with that many digits, so short
    and long sums are equally common. A fixed hash of the pair (a, b) puts
    ``test_fraction`` of all pairs in a held-out set that the corpus never
    contains.

    The corpus can be careless: a share ``carry_slip`` of its documents is
    written by someone who forgets every carry (``sum_without_carries``:
    "57+68=15"). A model that reads it learns both ways of adding and picks
    the right one only some of the time: the skill is there, the habit is
    not, which is what RL with a verifier fixes (chapter 13).

    The reward is 1.0 when the completion is exactly the sum's digits, else 0.0.
    """

    name = "arithmetic"

    def __init__(self, max_digits: int = 3, test_fraction: float = 0.1, carry_slip: float = 0.0):
        if not 1 <= max_digits <= 6:
            raise ValueError(f"max_digits must lie in 1..6; got {max_digits}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
        if not 0.0 <= carry_slip <= 1.0:
            raise ValueError(f"carry_slip must lie in [0, 1]; got {carry_slip}")
        self.max_digits = max_digits
        self.test_fraction = test_fraction
        self.carry_slip = carry_slip

    def is_test(self, a, b) -> np.ndarray:
        """True for the pairs (a, b) held out of the corpus (vectorised over arrays)."""
        key = np.asarray(a, dtype=np.uint64) * np.uint64(10**6) + np.asarray(b, dtype=np.uint64)
        return (_mix64(key) % np.uint64(10_000)) < np.uint64(round(self.test_fraction * 10_000))

    def _operands(self, n: int, rng: np.random.Generator) -> np.ndarray:
        digits = rng.integers(1, self.max_digits + 1, size=n)
        low = np.where(digits == 1, 0, 10 ** (digits - 1))
        return rng.integers(low, 10**digits)

    def pairs(self, n: int, rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """n operand pairs (a, b), each of shape (n,), from the ``split`` ("train" or "test")."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
        a_out, b_out = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        while len(a_out) < n:  # rejection sampling: draw, keep the split's pairs, repeat
            m = max(2 * (n - len(a_out)), 16) * (20 if split == "test" else 2)
            a, b = self._operands(m, rng), self._operands(m, rng)
            keep = self.is_test(a, b) == (split == "test")
            a_out, b_out = np.concatenate([a_out, a[keep]]), np.concatenate([b_out, b[keep]])
        return a_out[:n], b_out[:n]

    @staticmethod
    def format_prompt(a: int, b: int) -> str:
        return f"{a}+{b}="

    def prompts(self, n: int, rng: np.random.Generator, split: str = "train") -> list[str]:
        """n prompts such as "47+385=" from the train or the held-out test pairs."""
        a, b = self.pairs(n, rng, split)
        return [self.format_prompt(x, y) for x, y in zip(a.tolist(), b.tolist())]

    def corpus(self, n: int, rng: np.random.Generator) -> list[str]:
        """n training documents "a+b=sum" (train pairs only); a share ``carry_slip`` forget their carries."""
        a, b = self.pairs(n, rng, "train")
        sums = a + b
        if self.carry_slip > 0:  # no draw at all otherwise: a clean corpus stays what it was
            sums = np.where(rng.random(n) < self.carry_slip, sum_without_carries(a, b), sums)
        return [f"{x}+{y}={s}" for x, y, s in zip(a.tolist(), b.tolist(), sums.tolist())]

    _PROMPT = re.compile(r"^(\d+)\+(\d+)=$")

    def _operands_of(self, prompt: str) -> tuple[int, int]:
        m = self._PROMPT.match(prompt)
        if m is None:
            raise ValueError(f"prompt must look like '12+345='; got {prompt!r}")
        return int(m.group(1)), int(m.group(2))

    def answer(self, prompt: str) -> str:
        """The correct completion of a prompt: the digits of a + b."""
        a, b = self._operands_of(prompt)
        return str(a + b)

    def careless_answer(self, prompt: str) -> str:
        """What the careless writer of the corpus answers: the sum with every carry forgotten.

        Equal to ``answer(prompt)`` exactly when no column carries.
        """
        a, b = self._operands_of(prompt)
        return str(sum_without_carries(a, b))

    def reward(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """1.0 where the completion is exactly the sum, else 0.0; shape (B,)."""
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions must have the same length; got {len(prompts)} and {len(completions)}")
        return np.array([float(c == self.answer(p)) for p, c in zip(prompts, completions)])


class ReviewTask:
    """Short reviews: "the soup was" -> " great and warm.", judged by a labeler that likes positive ones.

    A well-formed completion is a space, one to ``max_adjectives`` different
    adjectives from the word lists joined by " and ", and a full stop. Its
    labeler score is the number of positive adjectives minus the number of
    negative ones; anything else (a word not in the lists, a repeated
    adjective, too many adjectives, no full stop) scores ``malformed_score``,
    below every well-formed sentence. The corpus draws adjectives uniformly
    from all three lists, so the base model's mean score is near 0 and there
    is room to become more positive.

    ``preference_probability`` turns two scores into the probability that the
    labeler prefers the first (the Bradley-Terry model of chapter 11) and
    ``label_pairs`` samples those preferences.
    """

    name = "review"
    nouns = ("soup", "pasta", "bread", "coffee", "cake", "staff", "waiter", "room", "view", "music", "price", "bed")
    positive = ("good", "great", "tasty", "kind", "lovely", "fresh", "warm", "clean", "nice", "fun")
    negative = ("bad", "awful", "bland", "rude", "dirty", "stale", "cold", "slow", "loud", "dull")
    neutral = ("big", "small", "new", "old", "plain", "quiet")

    def __init__(self, max_adjectives: int = 3, malformed_score: float = -4.0):
        if max_adjectives < 1:
            raise ValueError(f"max_adjectives must be >= 1; got {max_adjectives}")
        if malformed_score >= -max_adjectives:
            raise ValueError(f"malformed_score must be below every well-formed score (< {-max_adjectives}); got {malformed_score}")
        self.max_adjectives = max_adjectives
        self.malformed_score = malformed_score
        self.sentiment = {w: 1.0 for w in self.positive} | {w: -1.0 for w in self.negative} | {w: 0.0 for w in self.neutral}
        self.adjectives = self.positive + self.negative + self.neutral

    def prompts(self, n: int, rng: np.random.Generator, split: str = "train") -> list[str]:
        """n prompts "the <noun> was"; the test split uses the last three nouns, the train split the others."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
        nouns = self.nouns[:-3] if split == "train" else self.nouns[-3:]
        return [f"the {nouns[i]} was" for i in rng.integers(len(nouns), size=n)]

    def corpus(self, n: int, rng: np.random.Generator) -> list[str]:
        """n documents "the <noun> was <adj>[ and <adj>]..." over all nouns (the test split is about rewards, not text)."""
        docs = []
        counts = rng.integers(1, self.max_adjectives + 1, size=n)
        nouns = rng.integers(len(self.nouns), size=n)
        for k, i in zip(counts.tolist(), nouns.tolist()):
            words = rng.choice(len(self.adjectives), size=k, replace=False)
            docs.append(f"the {self.nouns[i]} was " + " and ".join(self.adjectives[j] for j in words) + ".")
        return docs

    def score(self, completion: str) -> float:
        """The labeler's score of one completion: positives minus negatives, or malformed_score."""
        if not completion.startswith(" ") or not completion.endswith("."):
            return self.malformed_score
        words = completion[1:-1].split(" and ")
        if not 1 <= len(words) <= self.max_adjectives or len(set(words)) != len(words):
            return self.malformed_score
        if any(w not in self.sentiment for w in words):
            return self.malformed_score
        return sum(self.sentiment[w] for w in words)

    def reward(self, prompts: Sequence[str], completions: Sequence[str]) -> np.ndarray:
        """The labeler's scores, shape (B,). (The RL chapters learn a reward model of it instead.)"""
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions must have the same length; got {len(prompts)} and {len(completions)}")
        return np.array([self.score(c) for c in completions])

    def preference_probability(self, completions_a: Sequence[str], completions_b: Sequence[str], beta: float = 1.0) -> np.ndarray:
        """P(labeler prefers a over b) = sigmoid(beta * (score(a) - score(b))), shape (B,).

        beta sets how consistent the labeler is: beta = 0 is a coin flip, a large
        beta always picks the higher score.
        """
        if beta < 0:
            raise ValueError(f"beta must be >= 0; got {beta}")
        if len(completions_a) != len(completions_b):
            raise ValueError(f"completions_a and completions_b must have the same length; got {len(completions_a)} and {len(completions_b)}")
        diff = np.array([self.score(a) - self.score(b) for a, b in zip(completions_a, completions_b)])
        return 1.0 / (1.0 + np.exp(-beta * diff))

    def label_pairs(self, completions_a: Sequence[str], completions_b: Sequence[str], rng: np.random.Generator, beta: float = 1.0) -> np.ndarray:
        """Sampled labels, shape (B,): True where the labeler prefers a."""
        return rng.random(len(completions_a)) < self.preference_probability(completions_a, completions_b, beta)

    def split_document(self, document: str) -> tuple[str, str]:
        """("the soup was", " great.") from "the soup was great.": the prompt and its completion."""
        head, sep, tail = document.partition(" was")
        if not sep:
            raise ValueError(f"document must contain ' was'; got {document!r}")
        return head + sep, tail

