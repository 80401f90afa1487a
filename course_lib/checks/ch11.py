"""Checks for exercise 11: Bradley-Terry strengths by maximum likelihood, and the reward model's pairwise loss.

The references are written here, independently of ``course_lib.reward``:
the strengths are judged by the likelihood equations themselves (at the
maximum, each player's expected number of wins equals its observed number)
and compared with a plain-loop Zermelo iteration run to convergence; the
loss is compared with a per-pair loop that evaluates log(1 + e^(-d)) in a
form that cannot overflow.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import assert_close

__all__ = ["check_bradley_terry_mle", "check_bradley_terry_loss", "SEED_TABLE"]

# The win-count table of the chapter (players A, B, C): wins[i, j] = how often i beat j.
# A beat B 8 times and lost 4; A beat C 3 times and lost 5; B beat C 2 times and lost 3.
SEED_TABLE = np.array([[0, 8, 3], [4, 0, 2], [5, 3, 0]])


# ---------------------------------------------------------------- bradley_terry_mle
def _zermelo_loop(wins: np.ndarray, tol: float = 1e-15, max_iters: int = 200_000) -> np.ndarray:
    """Zermelo's fixed-point iteration in plain loops, run until nothing moves."""
    n = len(wins)
    p = [1.0 / n] * n
    for _ in range(max_iters):
        new = []
        for i in range(n):
            won = sum(wins[i][j] for j in range(n) if j != i)
            denom = sum((wins[i][j] + wins[j][i]) / (p[i] + p[j]) for j in range(n) if j != i and wins[i][j] + wins[j][i] > 0)
            new.append(won / denom)
        total = sum(new)
        new = [v / total for v in new]
        moved = max(abs(a - b) for a, b in zip(new, p))
        p = new
        if moved < tol:
            break
    return np.array(p)


def _expected_wins_loop(p, wins) -> np.ndarray:
    """sum_j n_ij * p_i / (p_i + p_j): how often each player should win its games under strengths p."""
    n = len(wins)
    return np.array([sum((wins[i][j] + wins[j][i]) * p[i] / (p[i] + p[j]) for j in range(n) if j != i) for i in range(n)])


def _mle_cases(hidden: bool):
    yield "the chapter's A/B/C table", SEED_TABLE
    yield "two players, 3 wins to 1 (closed form 3/4, 1/4)", np.array([[0, 3], [1, 0]])
    yield "a lopsided table (player 0 wins most of its games)", np.array([[0, 9, 7], [2, 0, 4], [1, 6, 0]])
    rng = np.random.default_rng(11 if hidden else 7)
    for n in ((5, 8) if hidden else (4,)):
        w = rng.integers(0, 10, size=(n, n)) + (1 - np.eye(n, dtype=int))  # every pair has played, each side won once
        np.fill_diagonal(w, 0)
        yield f"a random table of {n} players", w
    if hidden:
        yield "two players, 1 win to 9", np.array([[0, 1], [9, 0]])
        yield "counts that are not integers (weighted games)", np.array([[0, 2.5, 0.5], [1.5, 0, 3.0], [4.0, 1.0, 0]])


def _diagnose_mle(wins, got, expected) -> str:
    if not isinstance(got, np.ndarray) or got.shape != expected.shape or not np.all(np.isfinite(got)):
        return ""
    if abs(got.sum() - 1.0) > 1e-6 and got.sum() > 0:
        if np.allclose(got / got.sum(), expected, atol=1e-6):
            return f" Hint: the ratios are right but the strengths sum to {got.sum():.6g}: divide by their sum."
        return f" Hint: the strengths must sum to 1; yours sum to {got.sum():.6g}."
    transposed = _zermelo_loop(np.asarray(wins, dtype=float).T)
    if np.allclose(got, transposed, atol=1e-5):
        return (" Hint: these are the strengths of the transposed table. wins[i, j] counts how often i BEAT j,"
                " so player i's wins are the row sum wins[i, :].")
    if np.allclose(got, expected, atol=1e-3):
        return " Hint: close, but not converged: run more iterations (or a tighter tolerance)."
    return ""


def check_bradley_terry_mle(bradley_terry_mle, hidden: bool = False) -> None:
    """Check ``bradley_terry_mle(wins) -> strengths (n,)`` summing to 1 and maximising the likelihood."""
    n = 0
    for case, wins in _mle_cases(hidden):
        expected = _zermelo_loop(wins.astype(float))
        got = bradley_terry_mle(wins.copy())
        if got is not None and not isinstance(got, np.ndarray):
            got = np.asarray(got, dtype=float) if isinstance(got, (list, tuple)) else got
        try:
            assert_close(got, expected, "bradley_terry_mle", case, atol=1e-6, rtol=1e-6,
                         labels=lambda idx: f"player {idx[0]}")
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_mle(wins, got, expected)) from None
        # Independent of any algorithm: at the maximum, expected wins equal observed wins.
        assert_close(_expected_wins_loop(got, wins), wins.sum(axis=1).astype(float),
                     "bradley_terry_mle (expected wins under your strengths vs observed wins)", case,
                     atol=1e-4, rtol=1e-5, labels=lambda idx: f"player {idx[0]}")
        n += 1
    print(f"bradley_terry_mle: all {n} cases pass.")


# ---------------------------------------------------------------- bradley_terry_loss
def _softplus_neg(d: float) -> float:
    """-log sigmoid(d) = log(1 + e^(-d)), written so that neither branch overflows."""
    return math.log1p(math.exp(-d)) if d >= 0 else -d + math.log1p(math.exp(d))


def _loss_loop(r_chosen, r_rejected) -> float:
    pairs = list(zip(np.asarray(r_chosen, dtype=float).ravel(), np.asarray(r_rejected, dtype=float).ravel()))
    return sum(_softplus_neg(a - b) for a, b in pairs) / len(pairs)


def _loss_cases(hidden: bool):
    rng = np.random.default_rng(5 if hidden else 3)
    yield "one pair, chosen ahead by 2", np.array([2.0]), np.array([0.0])
    yield "one pair, chosen behind by 1.5", np.array([-1.0]), np.array([0.5])
    yield "a batch of 6 pairs", rng.normal(size=6), rng.normal(size=6)
    yield "a batch of 50 pairs with wide scores", rng.normal(size=50) * 5, rng.normal(size=50) * 5
    yield "large margins (a naive log(sigmoid(d)) overflows)", np.array([0.0, 900.0, -10.0]), np.array([900.0, 0.0, 30.0])
    if hidden:
        yield "equal scores give log 2", np.zeros(4), np.zeros(4)
        yield "a batch of 7 pairs", rng.normal(size=7) * 2, rng.normal(size=7)
        yield "margins of -1000", np.array([-1000.0, 1.0]), np.array([0.0, -1.0])


def _diagnose_loss(r_chosen, r_rejected, got: float) -> str:
    if not math.isfinite(got):
        return (" Hint: the result is not finite. log(sigmoid(d)) underflows to log(0) for very negative d;"
                " use -log sigmoid(d) = log(1 + exp(-d)) = softplus(-d) (np.logaddexp(0, -d), F.softplus(-d) or -F.logsigmoid(d)).")
    B = np.asarray(r_chosen).size
    if math.isclose(got, _loss_loop(r_rejected, r_chosen), rel_tol=1e-6, abs_tol=1e-9):
        return " Hint: chosen and rejected are swapped: the loss is -log sigmoid(r_chosen - r_rejected)."
    if B > 1 and math.isclose(got, B * _loss_loop(r_chosen, r_rejected), rel_tol=1e-6):
        return " Hint: that is the sum over pairs; the loss is the mean."
    if math.isclose(got, -_loss_loop(r_chosen, r_rejected), rel_tol=1e-6):
        return " Hint: the sign is flipped: the loss is MINUS log sigmoid(...), a positive number to minimise."
    return ""


def check_bradley_terry_loss(bradley_terry_loss, hidden: bool = False) -> None:
    """Check ``bradley_terry_loss(r_chosen, r_rejected)``: the mean of -log sigmoid(r_chosen - r_rejected).

    numpy in, numpy out; torch in, torch out with gradients.
    """
    n = 0
    for case, a, b in _loss_cases(hidden):
        expected = _loss_loop(a, b)
        got = bradley_terry_loss(a.copy(), b.copy())
        if got is None:
            raise AssertionError(f"bradley_terry_loss returned None for case '{case}'. Did you forget `return`?")
        if isinstance(got, torch.Tensor):
            raise AssertionError(f"bradley_terry_loss, case '{case}': numpy arrays in should give a numpy number out; got a torch tensor")
        if np.ndim(got) != 0:
            raise AssertionError(f"bradley_terry_loss, case '{case}': expected one number (the mean over pairs); got shape {np.shape(got)}")
        got = float(got)
        if not (math.isfinite(got) and math.isclose(got, expected, rel_tol=1e-7, abs_tol=1e-9)):
            raise AssertionError(f"bradley_terry_loss, case '{case}': expected {expected:.6g}, got {got:.6g}."
                                 + _diagnose_loss(a, b, got))
        n += 1
    # torch in, torch out: the reward model is trained through this function.
    for case, a, b in (("torch float32, a batch of 4", torch.tensor([1.0, -0.5, 2.0, 0.0]), torch.tensor([0.0, 0.5, -1.0, 0.0])),
                       ("torch float32, a margin of -150", torch.tensor([0.0, 3.0]), torch.tensor([150.0, 1.0]))):
        a = a.clone().requires_grad_(True)
        got = bradley_terry_loss(a, b)
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"bradley_terry_loss, case '{case}': torch tensors in should give a torch tensor out "
                                 f"(so gradients flow); got {type(got).__name__}")
        expected = torch.tensor(_loss_loop(a.detach().numpy(), b.numpy()), dtype=torch.float32)
        assert_close(got.detach().reshape(()), expected, "bradley_terry_loss", case, atol=1e-5, rtol=1e-5)
        if not got.requires_grad:
            raise AssertionError(f"bradley_terry_loss, case '{case}': the result carries no gradient; "
                                 "do not convert to numpy or call .detach()/.item() inside.")
        got.backward()
        # d loss / d r_chosen[k] = -(1 - sigmoid(d_k)) / B
        d = (a.detach() - b).double()
        expected_grad = (-(1.0 - torch.sigmoid(d)) / len(d)).float()
        assert_close(a.grad, expected_grad, "bradley_terry_loss (gradient with respect to r_chosen)", case,
                     atol=1e-6, rtol=1e-5, labels=lambda idx: f"pair {idx[0]}")
        n += 1
    print(f"bradley_terry_loss: all {n} cases pass.")
