"""Reward models: the Bradley-Terry model of pairwise preferences, and a GPT that learns it.

Chapter 11. Two halves:

* **Bradley-Terry on a win table** (Bradley & Terry, 1952): each player i has
  a strength pi_i > 0 and P(i beats j) = pi_i / (pi_i + pi_j).
  ``bradley_terry_probability``, ``bradley_terry_log_likelihood`` and
  ``bradley_terry_mle`` (Zermelo's iteration, which Hunter (2004) shows is a
  minorisation-maximisation algorithm) fit the strengths to a win-count table.
* **A reward model**: with pi_i = exp(r_i) the same model says
  P(chosen beats rejected) = sigmoid(r_chosen - r_rejected), so a network that
  outputs one score r per text is trained by minimising
  ``bradley_terry_loss`` = mean of -log sigmoid(r_chosen - r_rejected) over
  pairs a labeler has compared (Christiano et al., 2017; Stiennon et al.,
  2020). The network here is the course's GPT with a scalar head, read at each
  sequence's last real token (``last_token_scores``).

``load_or_train_reward_model`` caches the trained model next to the base model
(``course_lib.pretrain.cache_dir()``), and ``reward_fn`` turns it into the
``reward_fn(prompts, completions) -> torch.Tensor (B,)`` that chapter 12's PPO
loop calls.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import FAST
from .gpt import GPT, GPTConfig, generate, with_value_head
from .tasks import ReviewTask
from .tokenizer import CharTokenizer

__all__ = [
    "bradley_terry_probability",
    "bradley_terry_log_likelihood",
    "bradley_terry_mle",
    "bradley_terry_loss",
    "last_token_scores",
    "PreferencePairs",
    "written_reviews",
    "near_misses",
    "sample_completions",
    "preference_pairs",
    "encode_texts",
    "score_texts",
    "RewardConfig",
    "reward_config",
    "reward_lr",
    "train_reward_model",
    "pairwise_accuracy",
    "true_preference_accuracy",
    "reward_cache_key",
    "load_or_train_reward_model",
    "reward_fn",
    "REWARD_DATA_VERSION",
]

# Part of every reward-model cache key: bump it when the pair generator or the
# training code change what a config produces.
REWARD_DATA_VERSION = 2  # 2: near-miss variants of the written reviews (near_misses)


# ---------------------------------------------------------------- Bradley-Terry on a win table
def _check_strengths(strengths) -> np.ndarray:
    p = np.asarray(strengths, dtype=float)
    if p.ndim != 1 or p.size < 2:
        raise ValueError(f"strengths must be a 1-D array of at least 2 players; got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.any(p > 0):
        raise ValueError(f"strengths must be finite, >= 0 and not all 0; got {p}")
    return p


def _check_wins(wins) -> np.ndarray:
    w = np.asarray(wins, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] < 2:
        raise ValueError(f"wins must be a square (n, n) table with n >= 2; got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("wins must hold finite counts >= 0")
    if np.any(np.diag(w) != 0):
        raise ValueError(f"wins must have a zero diagonal (nobody plays themselves); got diagonal {np.diag(w)}")
    games = w + w.T
    idle = np.flatnonzero(games.sum(axis=1) == 0)
    if idle.size:
        raise ValueError(f"wins: players {idle.tolist()} never played, so their strengths are not determined")
    return w


def bradley_terry_probability(strengths) -> np.ndarray:
    """P[i, j] = pi_i / (pi_i + pi_j): the chance that i beats j, shape (n, n).

    strengths: (n,) positive numbers (any scale: only ratios matter). The
    diagonal is 1/2 (a player against a copy of itself). Rows and columns where
    both strengths are 0 are 1/2 too.

    Example: strengths [3, 1] give P = [[0.5, 0.75], [0.25, 0.5]].
    """
    p = _check_strengths(strengths)
    total = p[:, None] + p[None, :]  # (n, n)
    return np.divide(p[:, None], total, out=np.full(total.shape, 0.5), where=total > 0)


def bradley_terry_log_likelihood(strengths, wins) -> float:
    """log L = sum_{i != j} wins[i, j] * log(pi_i / (pi_i + pi_j)).

    strengths: (n,) >= 0; wins: (n, n) counts, wins[i, j] = how often i beat j.
    Games that happened with probability 0 (a win by a player of strength 0)
    give -inf.

    Example: strengths [2, 1] and wins [[0, 2], [1, 0]]:
    2 log(2/3) + 1 log(1/3) = -1.9095.
    """
    p = _check_strengths(strengths)
    w = _check_wins(wins)
    if w.shape[0] != p.shape[0]:
        raise ValueError(f"strengths has {p.shape[0]} players but wins is {w.shape}")
    prob = bradley_terry_probability(p)
    with np.errstate(divide="ignore"):
        log_prob = np.log(np.where(w > 0, prob, 1.0))  # a game that never happened adds 0, even when its prob is 0
    terms = w * log_prob
    return float(terms.sum())


def bradley_terry_mle(wins, iters: int = 10_000, tol: float = 1e-12) -> np.ndarray:
    """Maximum-likelihood strengths of the Bradley-Terry model, shape (n,), summing to 1.

    wins: (n, n) counts with wins[i, j] = how often player i beat player j (the
    diagonal must be 0). Zermelo's iteration (Zermelo 1929; Hunter 2004, "MM
    algorithms for generalized Bradley-Terry models", eq. 3):

        pi_i <- W_i / sum_{j != i} n_ij / (pi_i + pi_j),   then normalise to sum 1,

    with W_i = sum_j wins[i, j] the wins of i and n_ij = wins[i, j] + wins[j, i]
    the games between i and j. Each step increases the log-likelihood; it stops
    when no strength moves by more than ``tol`` or after ``iters`` steps.

    The maximum is finite and unique when every split of the players into two
    groups has a win of each group over the other (Hunter's Assumption 1). When
    it does not, the likelihood increases towards the boundary: players who
    only lose get strength 0 and the iteration returns its last iterate.

    For two players the answer is closed-form: pi_0 = w / (w + l).
    Example: wins [[0, 3], [1, 0]] -> [0.75, 0.25].
    """
    w = _check_wins(wins)
    if iters < 1:
        raise ValueError(f"iters must be >= 1; got {iters}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    n = w.shape[0]
    games = w + w.T  # n_ij, symmetric, zero diagonal
    won = w.sum(axis=1)  # W_i
    p = np.full(n, 1.0 / n)
    for _ in range(iters):
        total = p[:, None] + p[None, :]  # (n, n): pi_i + pi_j
        denominator = np.divide(games, total, out=np.zeros_like(games), where=games > 0).sum(axis=1)
        new = won / denominator  # every player played, so denominator > 0
        new /= new.sum()
        done = np.max(np.abs(new - p)) < tol
        p = new
        if done:
            break
    return p


# ---------------------------------------------------------------- the pairwise loss
def bradley_terry_loss(r_chosen, r_rejected):
    """Mean over pairs of -log sigmoid(r_chosen - r_rejected): the reward model's loss.

    r_chosen, r_rejected: scores of the preferred and the other completion,
    same shape (B,) (any shape; the mean is over all entries). It is the
    negative log-likelihood of the labels under Bradley-Terry with
    pi = exp(r), since exp(a) / (exp(a) + exp(b)) = sigmoid(a - b).

    Computed as softplus(-(r_chosen - r_rejected)) = log(1 + exp(-d)), which
    stays finite for any d: log(sigmoid(d)) written naively underflows to
    log(0) = -inf once d < -745 in float64 (about -104 in float32).
    Torch in, torch out (a 0-d tensor that can be back-propagated); numpy in,
    numpy out.

    Example: r_chosen [2, 0], r_rejected [0, 0] give
    (log(1 + e^-2) + log 2) / 2 = (0.1269 + 0.6931) / 2 = 0.4100.
    """
    torch_in = isinstance(r_chosen, torch.Tensor)
    if torch_in != isinstance(r_rejected, torch.Tensor):
        raise ValueError("r_chosen and r_rejected must both be torch tensors or both numpy arrays")
    if not torch_in:
        r_chosen, r_rejected = np.asarray(r_chosen, dtype=float), np.asarray(r_rejected, dtype=float)
    if tuple(r_chosen.shape) != tuple(r_rejected.shape):
        raise ValueError(f"r_rejected must have the shape of r_chosen {tuple(r_chosen.shape)}; got {tuple(r_rejected.shape)}")
    if (r_chosen.numel() if torch_in else r_chosen.size) == 0:
        raise ValueError("r_chosen must hold at least one pair")
    margin = r_chosen - r_rejected
    if torch_in:
        return F.softplus(-margin).mean()
    return np.logaddexp(0.0, -margin).mean()


# ---------------------------------------------------------------- reading the score
def _last_real_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last 1 in each row of a (B, T) mask."""
    T = mask.shape[1]
    return T - 1 - mask.flip(dims=[1]).long().argmax(dim=1)


def last_token_scores(model: GPT, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The value head read at each row's last real token: the reward model's score, shape (B,).

    ids, mask: (B, T); mask is 1 for real tokens and 0 for padding, on either
    side. The score of a whole sequence sits at its last token because, with
    causal attention, that is the only position that has seen all of it.
    Differentiable (no ``no_grad`` inside).

    Example: values [[.1, .2, .3], [.4, .5, .6]] with mask [[1, 1, 0], [0, 1, 1]]
    give [.2, .6].
    """
    if ids.dim() != 2 or mask.shape != ids.shape:
        raise ValueError(f"ids and mask must both have shape (B, T); got {tuple(ids.shape)} and {tuple(mask.shape)}")
    if getattr(model, "value_head", None) is None:
        raise ValueError("model must have a value head: GPT(config, value_head=True) or with_value_head(base)")
    real = mask.bool()
    if not bool(real.any(dim=1).all()):
        raise ValueError("mask must mark at least one real token in every row")
    # Right padding only (every row is 1...1 0...0): plain causal attention is exact
    # for the real tokens and takes the fused kernel, so the mask need not be passed.
    right_padded = bool((real[:, 1:] <= real[:, :-1]).all()) and bool(real[:, 0].all())
    values = model.values(ids) if right_padded else model.values(ids, attention_mask=mask)  # (B, T)
    last = _last_real_index(real)  # (B,)
    return values.gather(1, last[:, None]).squeeze(1)


# ---------------------------------------------------------------- preference pairs
@dataclass
class PreferencePairs:
    """Compared completions: for each i, the labeler preferred ``chosen[i]`` to ``rejected[i]`` after ``prompts[i]``.

    Completions are the text after the prompt, as ``CharTokenizer.decode``
    returns it (no <eos>).
    """

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]

    def __post_init__(self):
        if not len(self.prompts) == len(self.chosen) == len(self.rejected):
            raise ValueError(f"prompts, chosen and rejected must have the same length; got "
                             f"{len(self.prompts)}, {len(self.chosen)} and {len(self.rejected)}")

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index) -> "PreferencePairs":
        """The pairs at ``index`` (a slice or a sequence of ints)."""
        idx = range(len(self))[index] if isinstance(index, slice) else [int(i) for i in index]
        return PreferencePairs([self.prompts[i] for i in idx], [self.chosen[i] for i in idx], [self.rejected[i] for i in idx])


def written_reviews(task: ReviewTask, n: int, rng: np.random.Generator, positive_weight: float = 4.0,
                    flawed: float = 0.2) -> list[str]:
    """n reviews written from the task's word lists, leaning positive: the labeler's own demonstrations.

    Each has 1..max_adjectives different adjectives; a positive adjective is
    ``positive_weight`` times as likely to be picked as any other. A share
    ``flawed`` of them carries a mistake the labeler scores as malformed: an
    adjective said twice, or one adjective too many. Both teach the reward
    model what a policy pushed towards praise might try ("great and great.").
    """
    words = task.adjectives
    weights = np.array([positive_weight if w in task.positive else 1.0 for w in words])
    weights /= weights.sum()
    out = []
    for _ in range(n):
        k = int(rng.integers(1, task.max_adjectives + 1))
        kind = rng.random()
        if kind < flawed / 2:  # one adjective too many
            k = task.max_adjectives + 1
        picked = [words[j] for j in rng.choice(len(words), size=k, replace=False, p=weights)]
        if flawed / 2 <= kind < flawed:  # an adjective said twice
            picked = picked + picked[:1] if k == 1 else picked[:-1] + picked[:1]
        out.append(" " + " and ".join(picked) + ".")
    return out


def near_misses(task: ReviewTask, reviews: Sequence[str], rng: np.random.Generator) -> list[str]:
    """One near-miss of each review: the same text with one mistake that the labeler scores as malformed.

    The mistake is drawn uniformly from: the leading space dropped or turned into another
    character (" tasty." -> "tasty.", "ttasty."), the full stop dropped, one or every " and "
    turned into a space (" great and fresh." -> " great fresh."), one adjective misspelt,
    a scrap of text after the full stop (" fun." -> " fun.an."), or one character inserted,
    deleted or replaced anywhere. Reviews of one adjective have no " and " to drop; they get
    one of the others. Paired against the review itself, a near-miss teaches the reward model
    the format the labeler enforces, which it would otherwise learn only from the base model's
    own malformed samples: without them PPO finds these holes (chapter 12).

    Example: " great and fresh." can become "great and fresh.", " great and fresh",
    " great fresh.", " great and frsh." or " great and fresh.ea.".
    """
    alphabet = CharTokenizer().alphabet
    letters = "abcdefghijklmnopqrstuvwxyz"

    def pick(chars: str) -> str:
        return chars[int(rng.integers(len(chars)))]

    def edit(text: str, chars: str, at: int | None = None) -> str:
        i = int(rng.integers(len(text))) if at is None else at
        how = int(rng.integers(3))
        if how == 0:
            return text[:i] + text[i + 1:]
        return text[:i] + pick(chars) + text[i + (how == 2):]

    out = []
    for review in reviews:
        words = review[1:-1].split(" and ")
        kinds = ["space", "stop", "misspell", "tail", "edit"] + (["and"] * (len(words) > 1))
        kind = kinds[int(rng.integers(len(kinds)))]
        for _ in range(20):  # retry until the labeler calls it malformed
            if kind == "space":
                text = review[1:] if rng.random() < 0.5 else pick(alphabet.replace(" ", "")) + review[1:]
            elif kind == "stop":
                text = review[:-1]
            elif kind == "tail":  # a piece of an adjective and another stop
                w = pick(task.adjectives)
                start = int(rng.integers(len(w)))
                text = review + w[start : start + int(rng.integers(1, 5))] + "."
            elif kind == "and":
                if rng.random() < 0.5:  # every " and "
                    text = " " + " ".join(words) + "."
                else:
                    j = int(rng.integers(len(words) - 1))
                    text = " " + " and ".join(words[:j]) + (" and " if j else "") + words[j] + " " + " and ".join(words[j + 1:]) + "."
            elif kind == "misspell":
                j = int(rng.integers(len(words)))
                text = " " + " and ".join(words[:j] + [edit(words[j], letters)] + words[j + 1:]) + "."
            else:
                text = edit(review, alphabet)
            if task.score(text) == task.malformed_score and text != review:
                break
        out.append(text)
    return out


@torch.no_grad()
def sample_completions(policy: GPT, prompts: Sequence[str], seed: int, tokenizer: CharTokenizer,
                        temperature: float = 1.0, batch_size: int = 512) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = [tokenizer.encode(p) for p in prompts[i : i + batch_size]]
        max_new = policy.config.block_size - max(map(len, chunk))
        completions, mask = generate(policy, chunk, max_new, temperature=temperature, eos_id=tokenizer.eos_id, generator=gen)
        out += tokenizer.decode_batch(completions, mask)
    return out


def preference_pairs(policy: GPT, task: ReviewTask, n: int, seed: int, split: str = "train", beta: float = 2.0,
                     written_fraction: float = 0.5, tokenizer: CharTokenizer | None = None,
                     drop_ties: bool = True, near_miss_fraction: float = 0.8) -> PreferencePairs:
    """n labelled pairs: for each prompt, a sample of ``policy`` against a second completion.

    The second completion is another sample of the policy, or, for a share
    ``written_fraction`` of the prompts, a review the labeler wrote
    (``written_reviews``): the base policy alone rarely writes three positive
    adjectives, so without them the reward model would never see the top of
    the scale that RLHF will push towards. For a share ``near_miss_fraction`` of
    those written pairs, the first completion is not a sample either but a
    near-miss of the written review (``near_misses``: the same review with one
    mistake, such as its leading space, its full stop or an " and " dropped, or
    a word misspelt), so the reward model sees the labeler's format enforced
    on exactly the texts PPO will push towards. Pairs whose two completions are the
    same text are dropped (they carry no information) and replaced; so are,
    with ``drop_ties``, pairs the labeler scores the same: it answers "no
    preference" for those, and such pairs are left out, as many collection
    pipelines do.

    The labels come from ``task.label_pairs`` with noise ``beta``: the labeler
    prefers a over b with probability sigmoid(beta * (score(a) - score(b))).
    Prompts come from ``split`` ("train", or "test" for held-out nouns).
    Deterministic given ``seed``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if not 0.0 <= written_fraction <= 1.0:
        raise ValueError(f"written_fraction must lie in [0, 1]; got {written_fraction}")
    if not 0.0 <= near_miss_fraction <= 1.0:
        raise ValueError(f"near_miss_fraction must lie in [0, 1]; got {near_miss_fraction}")
    tokenizer = tokenizer or CharTokenizer()
    rng = np.random.default_rng(seed)
    prompts, chosen, rejected = [], [], []
    round_ = 0
    while len(prompts) < n:
        m = n - len(prompts) + 16
        batch_prompts = task.prompts(m, rng, split)
        first = sample_completions(policy, batch_prompts, seed * 1000 + 2 * round_, tokenizer)
        second = sample_completions(policy, batch_prompts, seed * 1000 + 2 * round_ + 1, tokenizer)
        written = rng.random(m) < written_fraction
        demos = written_reviews(task, int(written.sum()), rng)
        second = [demos.pop() if w else s for s, w in zip(second, written)]
        near = written & (rng.random(m) < near_miss_fraction)
        misses = near_misses(task, [b for b, w in zip(second, near) if w], rng)[::-1]
        first = [misses.pop() if w else a for a, w in zip(first, near)]
        first_wins = task.label_pairs(first, second, rng, beta=beta)
        tie = np.array([task.score(a) == task.score(b) for a, b in zip(first, second)]) & drop_ties
        for p, a, b, a_wins, skip in zip(batch_prompts, first, second, first_wins, tie):
            if a != b and not skip and len(prompts) < n:
                prompts.append(p)
                chosen.append(a if a_wins else b)
                rejected.append(b if a_wins else a)
        round_ += 1
    return PreferencePairs(prompts, chosen, rejected)


# ---------------------------------------------------------------- scoring texts
def encode_texts(prompts: Sequence[str], completions: Sequence[str], tokenizer: CharTokenizer,
                 device=None, max_len: int | None = None, pad_left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """<bos> prompt completion <eos> for each pair, right-padded: ids (B, T), mask (B, T).

    The <eos> tells the reward model that the text is finished, so it scores a
    whole completion, not a prefix of one. With ``max_len`` (the model's
    block size) completions are cut so that every row fits. ``pad_left``: pad on
    the left instead, so that every row's last token is in the last column.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions must have the same length; got {len(prompts)} and {len(completions)}")
    if len(prompts) == 0:
        raise ValueError("prompts must hold at least one text")
    if max_len is not None:
        if max(map(len, prompts)) + 2 > max_len:
            raise ValueError(f"a prompt of {max(map(len, prompts))} characters does not fit max_len {max_len} with <bos> and <eos>")
        completions = _truncate(prompts, completions, max_len)
    rows = [tokenizer.encode(p + c, bos=True, eos=True) for p, c in zip(prompts, completions)]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        cols = slice(T - len(r), T) if pad_left else slice(0, len(r))
        ids[b, cols] = torch.tensor(r)
        mask[b, cols] = 1
    return ids.to(device), mask.to(device)


def _truncate(prompts, completions, block_size: int):
    """Completions cut so that <bos> + prompt + completion + <eos> fits the model."""
    return [c[: max(0, block_size - 2 - len(p))] for p, c in zip(prompts, completions)]


@torch.no_grad()
def score_texts(model: GPT, prompts: Sequence[str], completions: Sequence[str], tokenizer: CharTokenizer | None = None,
                batch_size: int = 512) -> torch.Tensor:
    """The reward model's scores of (prompt, completion) pairs, shape (B,), float32, no grad.

    Completions too long for the model's block are cut to fit. The same numbers as
    ``last_token_scores`` with less work: the texts are padded on the left, so every
    row's score sits in the last column and the last block runs there alone
    (``keep_last=1``), and the padding is skipped (``skip_padding``).
    """
    tokenizer = tokenizer or CharTokenizer()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():  # GPT.values refuses a model without a value head
        for i in range(0, len(prompts), batch_size):
            ids, mask = encode_texts(prompts[i : i + batch_size], completions[i : i + batch_size], tokenizer, device,
                                     max_len=model.config.block_size, pad_left=True)
            out.append(model.values(ids, attention_mask=mask, skip_padding=True, keep_last=1)[:, -1].float())
    model.train(was_training)
    return torch.cat(out)


def pairwise_accuracy(model: GPT, pairs: PreferencePairs, tokenizer: CharTokenizer | None = None) -> float:
    """Share of pairs where the model scores the labeller's choice above the other: agreement with the (noisy) labels."""
    r_chosen = score_texts(model, pairs.prompts, pairs.chosen, tokenizer)
    r_rejected = score_texts(model, pairs.prompts, pairs.rejected, tokenizer)
    return float((r_chosen > r_rejected).float().mean())


def true_preference_accuracy(model: GPT, pairs: PreferencePairs, task: ReviewTask,
                             tokenizer: CharTokenizer | None = None) -> float:
    """Share of pairs where the model ranks the completion with the higher labeler score higher.

    This is agreement with the labeler's noiseless preference: pairs whose two
    completions score the same are left out (there is nothing to get right).
    """
    r_chosen = score_texts(model, pairs.prompts, pairs.chosen, tokenizer).numpy()
    r_rejected = score_texts(model, pairs.prompts, pairs.rejected, tokenizer).numpy()
    s_chosen = np.array([task.score(c) for c in pairs.chosen])
    s_rejected = np.array([task.score(c) for c in pairs.rejected])
    decided = s_chosen != s_rejected
    if not decided.any():
        raise ValueError("pairs: every pair is a tie under the labeler's score; accuracy is undefined")
    agree = (r_chosen > r_rejected) == (s_chosen > s_rejected)
    return float(agree[decided].mean())


# ---------------------------------------------------------------- training
@dataclass(frozen=True)
class RewardConfig:
    """One reward-model run: the pairs it sees and how it is trained. Every field is part of the cache key."""

    n_pairs: int = 16000  # labelled training pairs (prompts from the train split)
    n_test_pairs: int = 1000  # held-out pairs for the accuracy (prompts from the test split, unseen nouns)
    beta: float = 2.0  # labeler consistency: P(prefers a) = sigmoid(beta * (score(a) - score(b)))
    written_fraction: float = 0.5  # share of pairs whose second completion the labeler wrote (see written_reviews)
    steps: int = 1000  # optimiser steps (about one pass over the pairs; more overfits the training nouns)
    batch_size: int = 32  # pairs per step (so 2 * batch_size sequences per forward pass)
    # peak learning rate of AdamW (linear warm-up, then cosine decay). 1e-3 fits the training nouns as well
    # but generalises worse: held-out agreement with the true preference 90.1% / 82.1% (seeds 0 / 1) against
    # 91.5% / 87.6% at 5e-4; AdamW's weight decay 0.1 at 1e-3 gave 85.2% (seed 0).
    lr: float = 5e-4
    warmup_steps: int = 20  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # the cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.0  # AdamW's decoupled weight decay on matrices
    grad_clip: float = 1.0  # clip the gradient's global norm to this
    eval_every: int = 100  # steps between held-out accuracy checks in the history
    seed: int = 0  # seeds the pairs, the labels and the batches

    def __post_init__(self):
        for name in ("n_pairs", "n_test_pairs", "steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0; got {self.beta}")
        if not 0.0 <= self.written_fraction <= 1.0:
            raise ValueError(f"written_fraction must lie in [0, 1]; got {self.written_fraction}")


def reward_config(fast: bool | None = None) -> RewardConfig:
    """The course's reward model: the full budget, or a small one in fast mode (``COURSE_FAST=1``)."""
    fast = FAST if fast is None else fast
    if fast:
        return RewardConfig(n_pairs=2000, n_test_pairs=400, steps=300, eval_every=50, lr=1e-3)  # 300 steps: a larger step
    return RewardConfig()


def reward_lr(step: int, config: RewardConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then a cosine decay to ``lr * min_lr_ratio`` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train_reward_model(base: GPT, pairs: PreferencePairs, config: RewardConfig, progress: bool = True,
                       eval_pairs: PreferencePairs | None = None, task: ReviewTask | None = None,
                       tokenizer: CharTokenizer | None = None) -> tuple[GPT, dict]:
    """Fit a reward model to preference pairs: a copy of ``base`` with a value head, trained on ``bradley_terry_loss``.

    Each step draws ``batch_size`` pairs, scores chosen and rejected in one
    forward pass (``last_token_scores``), and takes an AdamW step. Returns the
    model (eval mode) and a history: ``loss`` and ``accuracy`` (on the step's
    batch, against its labels) per step; with ``eval_pairs``, ``eval`` holds
    (step, accuracy against the labels[, against the true preference if
    ``task`` is given]) every ``eval_every`` steps; ``seconds`` and
    ``cpu_seconds``.
    """
    from tqdm.auto import tqdm

    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one pair")
    tokenizer = tokenizer or CharTokenizer()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed + 1)
    model = with_value_head(base)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    history = {"loss": [], "accuracy": [], "eval": []}
    start, cpu_start = time.perf_counter(), time.process_time()
    batch_size = min(config.batch_size, len(pairs))
    bar = tqdm(range(config.steps), desc="reward model", disable=not progress, mininterval=1.0)
    for step in bar:
        idx = rng.choice(len(pairs), size=batch_size, replace=False)
        prompts = [pairs.prompts[i] for i in idx]
        completions = [pairs.chosen[i] for i in idx] + [pairs.rejected[i] for i in idx]
        ids, mask = encode_texts(prompts + prompts, completions, tokenizer, max_len=model.config.block_size)
        for group in optimizer.param_groups:
            group["lr"] = reward_lr(step, config)
        scores = last_token_scores(model, ids, mask)  # (2B,)
        r_chosen, r_rejected = scores[: len(idx)], scores[len(idx):]
        loss = bradley_terry_loss(r_chosen, r_rejected)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        history["loss"].append(loss.item())
        history["accuracy"].append(float((r_chosen > r_rejected).float().mean()))
        if eval_pairs is not None and ((step + 1) % config.eval_every == 0 or step == config.steps - 1):
            point = [step + 1, pairwise_accuracy(model, eval_pairs, tokenizer)]
            if task is not None:
                point.append(true_preference_accuracy(model, eval_pairs, task, tokenizer))
            history["eval"].append(tuple(point))
            model.train()
        if step % 20 == 0 or step == config.steps - 1:
            bar.set_postfix(loss=f"{np.mean(history['loss'][-20:]):.3f}", acc=f"{np.mean(history['accuracy'][-20:]):.2f}")
    history["seconds"] = time.perf_counter() - start
    history["cpu_seconds"] = time.process_time() - cpu_start
    return model.eval(), history


# ---------------------------------------------------------------- the cache
def _weights_hash(model: GPT) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "weights-" + digest.hexdigest()[:16]


def reward_cache_key(config: RewardConfig, base_key: str) -> str:
    """A short hash of every reward-config field, the base model's key and REWARD_DATA_VERSION."""
    payload = json.dumps({"config": asdict(config), "base": base_key, "data_version": REWARD_DATA_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_or_train_reward_model(config: RewardConfig | None = None, base=None, directory=None,
                               progress: bool = True) -> tuple[GPT, dict]:
    """The reward model for ``config`` (default ``reward_config()``): cached, or trained now and cached.

    ``base`` is the model it starts from: None for the course's base model
    (``load_or_pretrain(base_config())``), a ``PretrainConfig`` for another
    cached base model, or a ``GPT`` (then its weights' hash stands in for the
    pretraining key). The files are ``<directory>/reward-<key>.safetensors``
    and ``.json`` (default directory: ``course_lib.pretrain.cache_dir()``),
    written under temporary names and renamed, so two processes training at
    once never leave half a file.

    Returns the model (eval mode) and its record: config, base key, loss curve,
    held-out accuracy against the labels (``heldout_accuracy``) and against the
    labeler's true preference (``heldout_true_accuracy``), timings, and
    ``cached``.
    """

    from .pretrain import PretrainConfig, base_config, cache_dir, cache_key, cached_checkpoint, load_or_pretrain

    config = config or reward_config()
    if base is None:
        base = base_config()
    if isinstance(base, PretrainConfig):
        base_key = "base-" + cache_key(base)
        base_model = None
    elif isinstance(base, GPT):
        base_key, base_model = _weights_hash(base), base
    else:
        raise ValueError(f"base must be None, a PretrainConfig or a GPT; got {type(base).__name__}")
    folder = Path(directory) if directory is not None else cache_dir()
    key = reward_cache_key(config, base_key)

    def train():
        base_gpt = base_model if base_model is not None else load_or_pretrain(base, directory=directory, progress=progress)[0]
        task = ReviewTask()
        tokenizer = CharTokenizer()
        pairs = preference_pairs(base_gpt, task, config.n_pairs, config.seed, "train", config.beta, config.written_fraction, tokenizer)
        test_pairs = preference_pairs(base_gpt, task, config.n_test_pairs, config.seed + 10_000, "test", config.beta,
                                      config.written_fraction, tokenizer)
        model, history = train_reward_model(base_gpt, pairs, config, progress=progress, eval_pairs=test_pairs, task=task,
                                            tokenizer=tokenizer)
        record = {
            "config": asdict(config),
            "base_key": base_key,
            "data_version": REWARD_DATA_VERSION,
            "gpt_config": asdict(model.config),
            "loss": history["loss"],
            "accuracy": history["accuracy"],
            "eval": history["eval"],
            "seconds": history["seconds"],
            "cpu_seconds": history["cpu_seconds"],
            "torch_threads": torch.get_num_threads(),
            "train_accuracy": pairwise_accuracy(model, pairs, tokenizer),
            "heldout_accuracy": history["eval"][-1][1],
            "heldout_true_accuracy": history["eval"][-1][2],
        }
        return model, record

    return cached_checkpoint(folder, f"reward-{key}", lambda record: GPT(GPTConfig(**record["gpt_config"]), value_head=True),
                             train)


def reward_fn(model: GPT, tokenizer: CharTokenizer | None = None) -> Callable[[list[str], list[str]], torch.Tensor]:
    """``fn(prompts, completions) -> torch.Tensor (B,)``: the reward model as the reward of an RL loop.

    Scores are float32, computed without gradient, with the model in eval mode.
    Completions are the decoded text after each prompt (no <eos>).
    """
    tokenizer = tokenizer or CharTokenizer()

    def fn(prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        if len(prompts) != len(completions):
            raise ValueError(f"prompts and completions must have the same length; got {len(prompts)} and {len(completions)}")
        return score_texts(model, list(prompts), list(completions), tokenizer)

    return fn


if __name__ == "__main__":
    # python -m course_lib.reward [--fast]: train (or load) the reward model and report.
    import argparse

    parser = argparse.ArgumentParser(description="train (or load from the cache) the course's reward model")
    parser.add_argument("--fast", action="store_true", help="the fast-mode budget (and the fast base model)")
    parser.add_argument("--no-cache", action="store_true", help="train even when a checkpoint exists (into a temporary folder)")
    args = parser.parse_args()
    from .pretrain import base_config as _base_config

    cfg = reward_config(args.fast)
    print(", ".join(f"{k}={v}" for k, v in asdict(cfg).items()))
    if args.no_cache:
        import tempfile

        from .pretrain import cache_dir as _cache_dir

        with tempfile.TemporaryDirectory() as tmp:
            for f in _cache_dir().glob("base-*"):  # reuse the cached base models
                os.symlink(f, Path(tmp) / f.name)
            _, rec = load_or_train_reward_model(cfg, base=_base_config(args.fast), directory=tmp)
    else:
        _, rec = load_or_train_reward_model(cfg, base=_base_config(args.fast))
    print("held-out accuracy by step (labels, true preference):",
          ", ".join(f"{s}: {a:.1%}/{t:.1%}" for s, a, t in rec["eval"]))
    print(f"cached={rec['cached']}  wall {rec['seconds']:.1f} s  cpu {rec['cpu_seconds']:.1f} s  threads {rec['torch_threads']}  "
          f"train acc {rec['train_accuracy']:.1%}  held-out acc vs labels {rec['heldout_accuracy']:.1%}  "
          f"vs true preference {rec['heldout_true_accuracy']:.1%}")
