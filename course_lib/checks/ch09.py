"""Checks for exercise 9: log-probabilities of the taken actions, PPO's clipped loss, the adaptive beta.

References are plain loops over samples written from the formulas, independent of
``course_lib.losses``; gradients are compared with the derivative worked out by hand.
"""

from __future__ import annotations

import math

import torch

from . import assert_close

__all__ = ["check_action_log_probs", "check_ppo_clip_loss", "check_adaptive_kl_beta"]


# ---------------------------------------------------------------- log-probabilities of the taken actions
def _logp_loop(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    A = logits.shape[-1]
    rows, acts = logits.detach().double().reshape(-1, A).tolist(), actions.reshape(-1).tolist()
    out = []
    for row, a in zip(rows, acts):
        m = max(row)
        out.append(row[a] - m - math.log(sum(math.exp(x - m) for x in row)))
    return torch.tensor(out, dtype=torch.float64).reshape(actions.shape)


def _logp_cases(hidden: bool):
    g = torch.Generator().manual_seed(91 if hidden else 90)
    yield "6 states, 3 actions", torch.randn(6, 3, generator=g), torch.randint(3, (6,), generator=g)
    yield "2 actions, every action 1", torch.randn(5, 2, generator=g), torch.ones(5, dtype=torch.int64)
    yield "batch of 2 rollouts x 4 steps, 3 actions", torch.randn(2, 4, 3, generator=g), torch.randint(3, (2, 4), generator=g)
    yield "unnormalised logits (shifted by +5)", torch.randn(4, 4, generator=g) + 5.0, torch.randint(4, (4,), generator=g)
    if hidden:
        yield "very peaked logits (gaps of 200)", torch.tensor([[0.0, 200.0], [-100.0, 100.0]]), torch.tensor([0, 0])
        yield "a single sample", torch.randn(1, 5, generator=g), torch.tensor([4])
        yield "3 x 2 x 5 batch", torch.randn(3, 2, 5, generator=g), torch.randint(5, (3, 2), generator=g)


def check_action_log_probs(action_log_probs, hidden: bool = False) -> None:
    """Check ``action_log_probs(logits, actions)`` = log pi(a_t | s_t), shape (...), against a plain loop."""
    n = 0
    for case, logits, actions in _logp_cases(hidden):
        leaf = logits.clone().requires_grad_(True)
        got = action_log_probs(leaf, actions.clone())
        if not torch.is_tensor(got):
            raise AssertionError(f"action_log_probs, case '{case}': expected a torch tensor; got {type(got).__name__}")
        if not got.requires_grad:
            raise AssertionError(f"action_log_probs, case '{case}': the result carries no gradient; stay in torch (no .detach(), .item() or numpy)")
        assert_close(got.detach().double(), _logp_loop(logits, actions), "action_log_probs", case, atol=1e-4, rtol=1e-5)
        n += 1
    print(f"action_log_probs: all {n} cases pass.")


# ---------------------------------------------------------------- the clipped loss
def _clip_loss_loop(logp, old_logp, adv, eps, mask):
    lp, olp, A = (x.detach().double().reshape(-1).tolist() for x in (logp, old_logp, adv))
    m = [True] * len(lp) if mask is None else mask.reshape(-1).tolist()
    total, count = 0.0, 0
    for a, b, c, keep in zip(lp, olp, A, m):
        if keep:
            r = math.exp(a - b)
            total += min(r * c, min(max(r, 1 - eps), 1 + eps) * c)
            count += 1
    return -total / count


def _clip_grad_by_hand(logp, old_logp, adv, eps, mask):
    """d loss / d logp_t: -r_t A_t / n where the unclipped term is the active one, else 0."""
    lp, olp, A = logp.detach().double(), old_logp.detach().double(), adv.double()
    r = (lp - olp).exp()
    flat = ((A > 0) & (r > 1 + eps)) | ((A < 0) & (r < 1 - eps))
    keep = torch.ones_like(lp, dtype=torch.bool) if mask is None else mask
    return torch.where(flat | ~keep, torch.zeros_like(r), -r * A) / keep.sum()


def _clip_cases(hidden: bool):
    g = torch.Generator().manual_seed(93 if hidden else 92)

    def sample(shape, spread=0.4):
        old = torch.log(torch.rand(shape, generator=g) * 0.9 + 0.05)
        return old + spread * torch.randn(shape, generator=g), old, torch.randn(shape, generator=g)

    yield ("the notes' example: 0.1 -> 0.3, A = +2 and A = -2", torch.log(torch.tensor([0.3, 0.3])),
           torch.log(torch.tensor([0.1, 0.1])), torch.tensor([2.0, -2.0]), 0.2, None)
    yield "ratios on both sides of the band, eps 0.2", *sample((12,)), 0.2, None
    yield "ratio 1 everywhere (first minibatch)", *(lambda lp, A: (lp, lp.clone(), A))(torch.log(torch.rand(8, generator=g)), torch.randn(8, generator=g)), 0.2, None
    lp, olp, A = sample((3, 5))
    yield "batch 3 x 5 with a mask", lp, olp, A, 0.1, torch.rand(3, 5, generator=g) < 0.6
    if hidden:
        yield "large moves, eps 0.3", *sample((20,), spread=1.5), 0.3, None
        lp, olp, A = sample((2, 4, 6))
        yield "3 batch axes with a mask", lp, olp, A, 0.2, torch.rand(2, 4, 6, generator=g) < 0.5
        yield "all advantages negative", *(lambda lp, olp, A: (lp, olp, -A.abs()))(*sample((10,))), 0.2, None


def check_ppo_clip_loss(ppo_clip_loss, hidden: bool = False) -> None:
    """Check ``ppo_clip_loss(logp, old_logp, advantages, eps, mask=None)``: value and gradient.

    ``old_logp`` is handed over still attached to the graph of ``logp``, as it is in a
    training loop that forgot to detach it; a correct loss detaches it itself.
    """
    n = 0
    for case, logp, old_logp, adv, eps, mask in _clip_cases(hidden):
        theta = logp.clone().requires_grad_(True)
        delta = (logp - old_logp).detach()
        attached_old = theta - delta  # equal to old_logp in value, but differentiable like logp
        args = (theta * 1.0, attached_old, adv.clone(), eps) + (() if mask is None else (mask.clone(),))
        got = ppo_clip_loss(*args)
        if not torch.is_tensor(got) or got.dim() != 0:
            raise AssertionError(f"ppo_clip_loss, case '{case}': expected a torch scalar (the mean over samples); got {got!r}")
        expected = torch.tensor([_clip_loss_loop(logp, old_logp, adv, eps, mask)], dtype=torch.float64)
        assert_close(got.detach().double().reshape(1), expected, "ppo_clip_loss (the loss to minimise)", case, atol=1e-5, rtol=1e-5)
        got.backward()
        expected_grad = _clip_grad_by_hand(logp, old_logp, adv, eps, mask)
        grad = torch.zeros_like(theta, dtype=torch.float64) if theta.grad is None else theta.grad.double()
        if grad.abs().max() < 1e-12 < expected_grad.abs().max():
            raise AssertionError(
                f"ppo_clip_loss, case '{case}': the gradient with respect to logp is zero everywhere. When old_logp is "
                "still attached to the graph, exp(logp - old_logp) does not depend on the parameters: detach old_logp."
            )
        assert_close(grad, expected_grad, "the gradient of ppo_clip_loss with respect to logp", case, atol=1e-5, rtol=1e-4)
        n += 1
    print(f"ppo_clip_loss: all {n} cases pass (value and gradient).")


# ---------------------------------------------------------------- adaptive beta
def _beta_rule(beta: float, kl: float, target: float) -> float:
    if kl < target / 1.5:
        return beta / 2
    if kl > 1.5 * target:
        return beta * 2
    return beta


def check_adaptive_kl_beta(adaptive_kl_beta, hidden: bool = False) -> None:
    """Check ``adaptive_kl_beta(beta, kl, target)`` on both sides of both thresholds."""
    cases = [
        ("KL far below target", 1.0, 0.001, 0.01),
        ("KL far above target", 1.0, 0.1, 0.01),
        ("KL on target", 1.0, 0.01, 0.01),
        ("KL just below target (inside the band)", 0.5, 0.008, 0.01),
        ("KL just above target (inside the band)", 0.5, 0.013, 0.01),
        ("KL just below target / 1.5", 3.0, 0.0066, 0.01),
        ("KL just above 1.5 * target", 3.0, 0.0151, 0.01),
    ]
    if hidden:
        cases += [
            ("another target", 0.2, 0.5, 1.0),
            ("another target, below", 0.2, 0.6, 1.0),
            ("zero KL", 4.0, 0.0, 0.02),
        ]
    for case, beta, kl, target in cases:
        got = adaptive_kl_beta(beta, kl, target)
        expected = _beta_rule(beta, kl, target)
        try:
            got_value = float(got)
        except (TypeError, ValueError):
            raise AssertionError(f"adaptive_kl_beta, case '{case}': expected a number; got {got!r}") from None
        if not math.isclose(got_value, expected, rel_tol=1e-9):
            raise AssertionError(
                f"adaptive_kl_beta, case '{case}' (beta={beta}, kl={kl}, target={target}): expected {expected:g}, got {got_value:g}"
            )
    print(f"adaptive_kl_beta: all {len(cases)} cases pass.")
