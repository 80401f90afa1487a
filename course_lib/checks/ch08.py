"""Checks for exercise 8: the TRPO surrogate, the categorical KL, conjugate gradient.

The references are plain loops over samples and actions (surrogate, KL) and a
direct linear solve plus a textbook CG written with Python floats (conjugate
gradient), independent of ``course_lib.trpo``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import assert_close

__all__ = ["check_surrogate_objective", "check_categorical_kl", "check_conjugate_gradient"]


def _log_softmax_row(row: list[float]) -> list[float]:
    m = max(row)
    log_z = m + math.log(sum(math.exp(x - m) for x in row))
    return [x - log_z for x in row]


# ---------------------------------------------------------------- surrogate
def _surrogate_loop(logits: torch.Tensor, old_logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> float:
    """mean_t pi(a_t|s_t) / pi_old(a_t|s_t) * A_t, one sample at a time."""
    L, L_old = logits.detach().double().reshape(-1, logits.shape[-1]).tolist(), old_logits.double().reshape(-1, logits.shape[-1]).tolist()
    acts, adv = actions.reshape(-1).tolist(), advantages.double().reshape(-1).tolist()
    total = 0.0
    for row, old_row, a, A in zip(L, L_old, acts, adv):
        total += math.exp(_log_softmax_row(row)[a] - _log_softmax_row(old_row)[a]) * A
    return total / len(acts)


def _surrogate_cases(hidden: bool):
    g = torch.Generator().manual_seed(81 if hidden else 80)
    old = torch.randn(6, 3, generator=g)
    yield "6 states, 3 actions, pi = pi_old (ratio 1)", old.clone(), old, torch.randint(3, (6,), generator=g), torch.randn(6, generator=g)
    old = torch.randn(10, 2, generator=g)
    yield "10 states, 2 actions, pi != pi_old", old + 0.5 * torch.randn(10, 2, generator=g), old, torch.randint(2, (10,), generator=g), torch.randn(10, generator=g)
    old = torch.randn(4, 5, 3, generator=g)
    yield "batch of 4 sequences of 5 steps", old + torch.randn(4, 5, 3, generator=g), old, torch.randint(3, (4, 5), generator=g), torch.randn(4, 5, generator=g)
    if hidden:
        old = torch.randn(8, 4, generator=g) * 3
        yield "peaked policies (large logits)", old + torch.randn(8, 4, generator=g), old, torch.randint(4, (8,), generator=g), torch.randn(8, generator=g)
        old = torch.randn(1, 2, generator=g)
        yield "a single sample", old + 1.0, old, torch.tensor([1]), torch.tensor([2.0])


def check_surrogate_objective(surrogate_objective, hidden: bool = False) -> None:
    """Check ``surrogate_objective(logits, old_logits, actions, advantages)``: value and gradient."""
    n = 0
    for case, logits, old_logits, actions, advantages in _surrogate_cases(hidden):
        logits = logits.clone().requires_grad_(True)
        old_param = old_logits.clone().requires_grad_(True)  # a student who forgets to detach moves it too
        got = surrogate_objective(logits, old_param, actions.clone(), advantages.clone())
        expected = torch.tensor(_surrogate_loop(logits, old_logits, actions, advantages), dtype=got.dtype if torch.is_tensor(got) else torch.float64)
        if not torch.is_tensor(got):
            raise AssertionError(f"surrogate_objective, case '{case}': expected a torch scalar; got {type(got).__name__}")
        if got.dim() != 0:
            raise AssertionError(f"surrogate_objective, case '{case}': expected a scalar (the mean over samples); got shape {tuple(got.shape)}")
        # (1,)-shaped because assert_close indexes its first wrong entry
        assert_close(got.detach().reshape(1), expected.reshape(1), "surrogate_objective", case, atol=1e-5, rtol=1e-5)
        got.backward()
        if old_param.grad is not None and old_param.grad.abs().max() > 0:
            raise AssertionError(
                f"surrogate_objective, case '{case}': the gradient reaches old_logits. pi_old is the fixed policy "
                "that collected the data: detach it (old_logits.detach())."
            )
        # d/dlogits of mean r_t A_t: r_t A_t (onehot(a_t) - pi(.|s_t)) / n, per sample.
        with torch.no_grad():
            pi = torch.softmax(logits.double(), -1)
            ratio = (torch.log_softmax(logits.double(), -1) - torch.log_softmax(old_logits.double(), -1)).gather(-1, actions[..., None]).exp()
            onehot = torch.nn.functional.one_hot(actions, logits.shape[-1]).double()
            expected_grad = ratio * advantages.double()[..., None] * (onehot - pi) / actions.numel()
        if logits.grad is None:
            raise AssertionError(f"surrogate_objective, case '{case}': no gradient reaches logits; keep the computation in torch")
        assert_close(logits.grad.double(), expected_grad, "the gradient of surrogate_objective with respect to logits", case, atol=1e-5)
        n += 1
    print(f"surrogate_objective: all {n} cases pass (value and gradient).")


# ---------------------------------------------------------------- KL
def _kl_loop(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    A = logits_p.shape[-1]
    P, Q = logits_p.double().reshape(-1, A).tolist(), logits_q.double().reshape(-1, A).tolist()
    out = []
    for row_p, row_q in zip(P, Q):
        lp, lq = _log_softmax_row(row_p), _log_softmax_row(row_q)
        out.append(sum(math.exp(lp[a]) * (lp[a] - lq[a]) for a in range(A)))
    return torch.tensor(out, dtype=torch.float64).reshape(logits_p.shape[:-1])


def _kl_cases(hidden: bool):
    g = torch.Generator().manual_seed(83 if hidden else 82)
    yield "one state, p = (0.5, 0.5), q = (0.9, 0.1)", torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.9, 0.1]]))
    yield "5 states, 3 actions", torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    yield "unnormalised logits (shifted by +4)", torch.randn(4, 2, generator=g) + 4.0, torch.randn(4, 2, generator=g)
    yield "batch (2, 6) of states, 4 actions", torch.randn(2, 6, 4, generator=g), torch.randn(2, 6, 4, generator=g)
    if hidden:
        x = torch.randn(7, 5, generator=g)
        yield "identical distributions: KL = 0", x, x.clone()
        yield "peaked distributions", 4 * torch.randn(6, 3, generator=g), 4 * torch.randn(6, 3, generator=g)


def check_categorical_kl(categorical_kl, hidden: bool = False) -> None:
    """Check ``categorical_kl(logits_p, logits_q)`` = KL(p || q) per state against a plain loop."""
    n = 0
    for case, logits_p, logits_q in _kl_cases(hidden):
        got = categorical_kl(logits_p.clone(), logits_q.clone())
        expected = _kl_loop(logits_p, logits_q)
        if torch.is_tensor(got):
            got = got.double()
        assert_close(got, expected, "categorical_kl", case, atol=1e-5, rtol=1e-4)
        n += 1
    print(f"categorical_kl: all {n} cases pass.")


# ---------------------------------------------------------------- conjugate gradient
def _cg_loop(A: list[list[float]], b: list[float], iters: int) -> list[float]:
    """Textbook CG (Nocedal and Wright, Algorithm 5.2) with Python floats, from x = 0."""
    n = len(b)
    x, r, p = [0.0] * n, list(b), list(b)
    rr = sum(v * v for v in r)
    for _ in range(iters):
        if rr < 1e-30:
            break
        Ap = [sum(A[i][j] * p[j] for j in range(n)) for i in range(n)]
        alpha = rr / sum(p[i] * Ap[i] for i in range(n))
        x = [x[i] + alpha * p[i] for i in range(n)]
        r = [r[i] - alpha * Ap[i] for i in range(n)]
        rr_new = sum(v * v for v in r)
        p = [r[i] + rr_new / rr * p[i] for i in range(n)]
        rr = rr_new
    return x


def _spd(rng, n: int, condition: float) -> np.ndarray:
    """A random symmetric positive definite matrix with eigenvalues spread over [1, condition]."""
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (Q * np.geomspace(1.0, condition, n)) @ Q.T


def _cg_cases(hidden: bool):
    rng = np.random.default_rng(85 if hidden else 84)
    A = np.array([[4.0, 1.0], [1.0, 3.0]])
    yield "2 x 2 system, 2 iterations (exact)", A, np.array([1.0, 2.0]), 2
    yield "5 x 5 SPD, 5 iterations (exact)", _spd(rng, 5, 10.0), rng.normal(size=5), 5
    yield "8 x 8 SPD, only 3 iterations", _spd(rng, 8, 50.0), rng.normal(size=8), 3
    yield "diagonal 6 x 6, 1 iteration", np.diag(np.arange(1.0, 7.0)), rng.normal(size=6), 1
    if hidden:
        yield "12 x 12 SPD, 12 iterations", _spd(rng, 12, 100.0), rng.normal(size=12), 12
        yield "10 x 10 SPD, 4 iterations", _spd(rng, 10, 1e3), rng.normal(size=10), 4
        yield "identity: exact after 1 iteration", np.eye(4), rng.normal(size=4), 1


def check_conjugate_gradient(conjugate_gradient, hidden: bool = False) -> None:
    """Check ``conjugate_gradient(Avp, b, iters)`` against a direct solve and a textbook CG loop.

    Every correct CG produces the same iterates (x_k minimises the quadratic over the first
    k Krylov directions), so the check compares after ``iters`` iterations, exact or not,
    and also counts the products: one per iteration.
    """
    n_cases = 0
    for case, A, b, iters in _cg_cases(hidden):
        calls = []

        def Avp(v, A=A, calls=calls):
            calls.append(1)
            return A @ v

        got = conjugate_gradient(Avp, b.copy(), iters)
        if len(calls) > iters + 1:
            raise AssertionError(
                f"conjugate_gradient, case '{case}': called Avp {len(calls)} times for iters={iters}; "
                "CG needs one product A p per iteration"
            )
        expected = np.array(_cg_loop(A.tolist(), b.tolist(), iters))
        if iters >= len(b):
            expected_solve = np.linalg.solve(A, b)
            assert_close(got, expected_solve, "conjugate_gradient (compared with np.linalg.solve)", case, atol=1e-6, rtol=1e-6)
        assert_close(got, expected, f"conjugate_gradient after {iters} iteration(s)", case, atol=1e-6, rtol=1e-5)
        n_cases += 1
    # Torch in, torch out: TRPO runs it on parameter-sized torch vectors.
    A = torch.tensor(_spd(np.random.default_rng(86), 4, 5.0))
    b = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    got = conjugate_gradient(lambda v: A @ v, b.clone(), 4)
    assert_close(got, torch.linalg.solve(A, b), "conjugate_gradient", "torch tensors, 4 x 4, 4 iterations", atol=1e-6)
    print(f"conjugate_gradient: all {n_cases + 1} cases pass.")
