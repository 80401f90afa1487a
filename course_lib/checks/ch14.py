"""Checks for exercise 14: the log-probability of a completion, and the DPO loss.

The references are plain Python loops written from Rafailov et al. 2023 (eq. 7),
independent of ``course_lib.dpo`` and ``course_lib.losses``. When an answer is
wrong, the checks compare it with the usual mistakes (padding summed in, beta on
one side only, chosen and rejected swapped, the reference left out, an unstable
log(sigmoid)) and name the one it matches.
"""

from __future__ import annotations

import math

import torch

from . import assert_close

__all__ = ["check_completion_logprobs", "check_dpo_loss"]


# ---------------------------------------------------------------- completion_logprobs
def _completion_loop(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = []
    for row, m in zip(token_logps.tolist(), mask.tolist()):
        total = 0.0
        for value, keep in zip(row, m):
            if keep:
                total += value
        out.append(total)
    return torch.tensor(out, dtype=token_logps.dtype)


def _completion_cases(hidden: bool):
    gen = torch.Generator().manual_seed(41 if hidden else 40)

    def logps(B, T):
        # Prompt and padding positions hold real-looking numbers too: only the mask says what counts.
        return -torch.rand(B, T, generator=gen, dtype=torch.float64) * 3 - 0.05

    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1], [0, 1, 1, 0, 0, 0]])
    yield "prompt, completion, then padding", logps(3, 6), mask
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 1, 1]])
    yield "completions of different lengths", logps(2, 8), mask
    yield "one token each", logps(2, 3), torch.tensor([[0, 1, 0], [0, 0, 1]])
    if hidden:
        m = (torch.rand(5, 11, generator=gen) < 0.5).long()
        yield "a random mask", logps(5, 11), m
        yield "a row with no completion token", logps(2, 4), torch.tensor([[0, 0, 0, 0], [0, 1, 1, 1]])
        yield "a boolean mask", logps(2, 5), torch.tensor([[False, True, True, False, False], [False, False, True, True, True]])


def _diagnose_completion(token_logps, mask, got) -> str:
    if not isinstance(got, torch.Tensor):
        return ""
    if got.shape == token_logps.shape:
        return " Hint: return one number per row, shape (B,): sum over the time axis (dim=-1)."
    if got.shape != (token_logps.shape[0],):
        return ""
    m = mask.to(token_logps.dtype)
    if torch.allclose(got, token_logps.sum(-1), atol=1e-6):
        return (" Hint: that is the sum over every position, the prompt and the padding included. Only the"
                " completion's tokens are the policy's actions: multiply by completion_mask first.")
    if torch.allclose(got, (token_logps * m).sum(-1) / m.sum(-1).clamp(min=1), atol=1e-6):
        return (" Hint: that is the mean over the completion's tokens; log pi(y|x) is their SUM"
                " (the chain rule: log of a product of probabilities).")
    if torch.allclose(got, (token_logps * (1 - m)).sum(-1), atol=1e-6):
        return " Hint: you summed the positions where the mask is 0; sum where it is 1."
    return ""


def check_completion_logprobs(completion_logprobs, hidden: bool = False) -> None:
    """Check ``completion_logprobs(token_logps, completion_mask) -> (B,)`` against a loop over rows."""
    n = 0
    for case, lp, mask in _completion_cases(hidden):
        expected = _completion_loop(lp, mask)
        got = completion_logprobs(lp.clone(), mask.clone())
        try:
            assert_close(got, expected, "completion_logprobs", case, atol=1e-8, rtol=1e-8, labels=lambda idx: f"row {idx[0]}")
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_completion(lp, mask, got)) from None
        n += 1
    lp = -torch.rand(2, 4, dtype=torch.float64).requires_grad_()
    got = completion_logprobs(lp, torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1]]))
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        raise AssertionError("completion_logprobs, case 'gradients': the result carries no gradient. "
                             "Do not use torch.no_grad(), .detach(), .item() or numpy in it.")
    print(f"completion_logprobs: all {n} cases pass, and gradients flow.")


# ---------------------------------------------------------------- dpo_loss
def _neg_log_sigmoid(h: float) -> float:
    """-log(1 / (1 + e^-h)) without overflow on either side."""
    return math.log1p(math.exp(-h)) if h >= 0 else -h + math.log1p(math.exp(h))


def _dpo_loop(pc, pr, rc, rr, beta: float) -> torch.Tensor:
    total, B = 0.0, len(pc)
    for b in range(B):
        h = beta * ((pc[b] - rc[b]) - (pr[b] - rr[b]))
        total += _neg_log_sigmoid(h)
    return torch.tensor(total / B, dtype=torch.float64)


def _dpo_cases(hidden: bool):
    gen = torch.Generator().manual_seed(51 if hidden else 50)

    def logps(B, scale=8.0, dtype=torch.float64):
        return tuple(-torch.rand(B, generator=gen, dtype=torch.float64).mul(scale).add(0.5).to(dtype) for _ in range(4))

    yield "8 pairs, beta 0.1", logps(8), 0.1
    yield "5 pairs, beta 0.5", logps(5), 0.5
    yield "one pair, beta 2", logps(1), 2.0
    pc, pr, rc, rr = logps(4)
    yield "the policy still equals the reference (loss = log 2)", (pc, pr, pc.clone(), pr.clone()), 0.3
    # h = beta * margin of -300 nats in float32: sigmoid(h) underflows to 0 and log(0) = -inf.
    big = (torch.tensor([-320.0, -5.0]), torch.tensor([-20.0, -6.0]), torch.tensor([-20.0, -5.5]), torch.tensor([-20.0, -5.5]))
    yield "a policy far from the reference, in float32 (needs a stable log-sigmoid)", big, 1.0
    if hidden:
        yield "64 pairs, beta 0.05", logps(64, scale=30.0), 0.05
        yield "float32 inputs, beta 1", logps(6, dtype=torch.float32), 1.0
        big = (torch.tensor([-5.0]), torch.tensor([-900.0]), torch.tensor([-5.0]), torch.tensor([-5.0]))
        yield "a rejected completion the policy has all but ruled out (loss near 0)", big, 1.0


def _dpo_variants(pc, pr, rc, rr, beta):
    """The usual mistakes, each as a number to compare a wrong answer with."""
    ls = torch.nn.functional.logsigmoid
    right = beta * ((pc - rc) - (pr - rr))
    return {
        "chosen and rejected are swapped (the loss must fall when the CHOSEN completion gains probability)":
            -ls(-right).mean(),
        "beta multiplies only one side; it scales the whole difference of the two log-ratios":
            -ls(beta * (pc - rc) - (pr - rr)).mean(),
        "beta multiplies only one side (the rejected one); it scales the whole difference of the two log-ratios":
            -ls((pc - rc) - beta * (pr - rr)).mean(),
        "the reference log-probs are not subtracted: DPO's implicit reward is beta * log(pi / pi_ref)":
            -ls(beta * (pc - pr)).mean(),
        "the sign is flipped: the loss is MINUS log sigmoid(...), a number >= 0":
            ls(right).mean(),
        "that is the sum over pairs; take the mean":
            -ls(right).sum(),
        "beta is missing":
            -ls((pc - rc) - (pr - rr)).mean(),
    }


def _diagnose_dpo(args, beta, got) -> str:
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        return ""
    pc, pr, rc, rr = (a.double() for a in args)
    if not torch.isfinite(got):
        return (" Hint: the loss is not finite. log(sigmoid(h)) underflows to log(0) = -inf once h is very"
                " negative; use torch.nn.functional.logsigmoid(h), which is computed stably.")
    for name, value in _dpo_variants(pc, pr, rc, rr, beta).items():
        if torch.isfinite(value) and math.isclose(float(got), float(value), rel_tol=1e-5, abs_tol=1e-6):
            return " Hint: " + name + "."
    return ""


def check_dpo_loss(dpo_loss, hidden: bool = False) -> None:
    """Check ``dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)``."""
    n = 0
    for case, args, beta in _dpo_cases(hidden):
        expected = _dpo_loop(*(a.double().tolist() for a in args), beta)
        got = dpo_loss(*(a.clone() for a in args), beta)
        if isinstance(got, torch.Tensor) and got.dim() != 0:
            raise AssertionError(f"dpo_loss, case '{case}': expected a scalar (0-d tensor, the mean over pairs); "
                                 f"got shape {tuple(got.shape)}")
        try:
            atol = 1e-4 if args[0].dtype == torch.float32 else 1e-8
            assert_close(got.double() if isinstance(got, torch.Tensor) else got, expected, "dpo_loss", case,
                         atol=atol, rtol=1e-5)
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_dpo(args, beta, got)) from None
        n += 1
    _check_dpo_gradients(dpo_loss)
    print(f"dpo_loss: all {n} cases pass, and its gradients are right.")


def _check_dpo_gradients(dpo_loss) -> None:
    """The policy's log-probs get -beta * sigmoid(-h) / B (chosen) and the opposite (rejected); finite even far out."""
    pc = torch.tensor([-3.0, -300.0], requires_grad=True)
    pr = torch.tensor([-4.0, -2.0], requires_grad=True)
    rc, rr = torch.tensor([-3.5, -2.0]), torch.tensor([-3.5, -2.0])
    beta = 1.0
    loss = dpo_loss(pc, pr, rc, rr, beta)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise AssertionError("dpo_loss, case 'gradients': the loss carries no gradient. Do not use torch.no_grad(), "
                             ".detach(), .item() or numpy on the policy's log-probs.")
    loss.backward()
    if pc.grad is None or not torch.isfinite(pc.grad).all() or not torch.isfinite(pr.grad).all():
        raise AssertionError("dpo_loss, case 'gradients': a gradient is not finite for the pair with h = -298. "
                             "log(sigmoid(h)) gives NaN gradients where sigmoid underflows: use F.logsigmoid.")
    h = [beta * ((pc[b] - rc[b]) - (pr[b] - rr[b])).item() for b in range(2)]
    expected = torch.tensor([-beta / (1 + math.exp(x)) / 2 for x in h])
    assert_close(pc.grad, expected, "dpo_loss (gradient with respect to policy_chosen_logps)", "gradients",
                 atol=1e-5, rtol=1e-4, labels=lambda idx: f"pair {idx[0]}")
    assert_close(pr.grad, -expected, "dpo_loss (gradient with respect to policy_rejected_logps)", "gradients",
                 atol=1e-5, rtol=1e-4, labels=lambda idx: f"pair {idx[0]}")
