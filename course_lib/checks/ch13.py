"""Checks for exercise 13: group-standardised advantages, the k3 KL estimator, and the
per-sequence mean of GRPO's loss.

The references are plain Python loops over groups, tokens and sequences, written from
the formulas (DeepSeekMath, Shao et al. 2024, eq. 3; Schulman's KL-approximation note),
independently of ``course_lib.grpo`` and ``course_lib.losses``.
"""

from __future__ import annotations

import math

import torch

from . import assert_close

__all__ = ["check_group_advantages", "check_kl_k3", "check_sequence_mean"]


def _returned(got, what: str, case: str) -> None:
    if got is None:
        raise AssertionError(f"{what} returned None for case '{case}'. Did you forget `return`?")
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what}, case '{case}': expected a torch tensor back; got {type(got).__name__}")


# ---------------------------------------------------------------- group advantages
def _advantages_loop(rewards: list[float], G: int, eps: float) -> torch.Tensor:
    out = []
    for g in range(len(rewards) // G):
        group = rewards[g * G : (g + 1) * G]
        mean = sum(group) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / G)  # population std: divide by G
        out += [(r - mean) / (std + eps) for r in group]
    return torch.tensor(out, dtype=torch.float64)


def _advantage_cases(hidden: bool):
    gen = torch.Generator().manual_seed(31 if hidden else 30)
    yield "two groups of G = 4, 0/1 rewards", [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], 4
    yield "a group that is all right and one that is all wrong (std = 0)", [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], 3
    yield ("groups with very different reward levels (standardise each group, not the batch)",
           [10.0, 12.0, 11.0, 0.0, 1.0, 0.5, -5.0, -4.0, -6.0], 3)
    yield "six groups of G = 8, real-valued rewards", (torch.randn(48, generator=gen, dtype=torch.float64) * 2).tolist(), 8
    if hidden:
        yield "G = 2", [0.0, 1.0, 3.0, 3.0, -1.0, 2.0], 2
        yield "one group holding the whole batch", [0.5, 1.5, -0.5, 2.5, 0.0], 5
        yield "G = 1 (a lone completion has no baseline but itself: A = 0)", [1.0, 0.0, 2.0], 1
        yield "many groups of G = 16, 0/1 rewards", (torch.rand(160, generator=gen) < 0.3).double().tolist(), 16


def _diagnose_advantages(rewards: torch.Tensor, G: int, eps: float, got: torch.Tensor) -> str:
    if got.shape != rewards.shape:
        return ""
    if not torch.isfinite(got).all():
        return (" Hint: some advantages are NaN or inf. A group whose rewards are all equal has std 0;"
                " add eps to the std before dividing, so its advantages are 0.")
    whole = (rewards - rewards.mean()) / (rewards.std(correction=0) + eps)
    if torch.allclose(got, whole, atol=1e-5):
        return " Hint: you standardised over the whole batch; the mean and std must be taken within each group of G."
    grouped = rewards.reshape(-1, G)
    unbiased = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True, correction=1) + eps)).reshape(-1)
    if G > 1 and torch.allclose(got, unbiased, atol=1e-5):
        return " Hint: use the population std (divide by G, torch.std(..., correction=0)), not the sample std (divide by G - 1)."
    strided = rewards.reshape(G, -1)
    interleaved = ((strided - strided.mean(0)) / (strided.std(0, correction=0) + eps)).reshape(-1)
    if torch.allclose(got, interleaved, atol=1e-5):
        return " Hint: groups are contiguous: completions g*G .. g*G + G - 1 share a prompt. Reshape to (-1, G), not (G, -1)."
    no_eps = ((grouped - grouped.mean(1, keepdim=True)) / grouped.std(1, keepdim=True, correction=0)).reshape(-1)
    finite = torch.isfinite(no_eps)
    if finite.any() and torch.allclose(got[finite], no_eps[finite], atol=1e-7, rtol=1e-7):
        return (" Hint: divide by (std + eps), not by std alone: eps is what keeps a group whose rewards are all"
                " equal (std 0) at advantage 0 instead of 0/0.")
    centred = (grouped - grouped.mean(1, keepdim=True)).reshape(-1)
    if torch.allclose(got, centred, atol=1e-5):
        return " Hint: you subtracted the group mean but did not divide by the group std (+ eps)."
    return ""


def check_group_advantages(group_advantages, hidden: bool = False) -> None:
    """Check ``group_advantages(rewards, group_size, eps)`` against a loop over groups."""
    n = 0
    eps = 1e-4
    for case, rewards, G in _advantage_cases(hidden):
        r = torch.tensor(rewards, dtype=torch.float64)
        expected = _advantages_loop(rewards, G, eps)
        got = group_advantages(r.clone(), G, eps)
        _returned(got, "group_advantages", case)
        try:
            assert_close(got.double(), expected, "group_advantages", case, atol=1e-5, rtol=1e-5,
                         labels=lambda idx: f"completion {idx[0]} (group {idx[0] // G})")
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_advantages(r, G, eps, got.double())) from None
        n += 1
    print(f"group_advantages: all {n} cases pass.")


# ---------------------------------------------------------------- k3
def _k3_loop(logp: list[float], ref: list[float]) -> list[float]:
    out = []
    for lp, lr in zip(logp, ref):
        ratio = math.exp(lr) / math.exp(lp)  # pi_ref(x) / pi(x)
        out.append(ratio - math.log(ratio) - 1.0)
    return out


def _k3_cases(hidden: bool):
    gen = torch.Generator().manual_seed(41 if hidden else 40)
    logp = torch.rand(3, 5, generator=gen, dtype=torch.float64).clamp(0.02, 0.98).log()
    yield "policy and reference agree (KL 0)", logp, logp.clone()
    yield "a (3, 5) batch of per-token log-probs", logp, (torch.rand(3, 5, generator=gen, dtype=torch.float64).clamp(0.02, 0.98)).log()
    yield "tokens the reference finds much less likely", torch.full((4,), math.log(0.9), dtype=torch.float64), torch.log(torch.tensor([0.5, 0.2, 0.05, 0.01], dtype=torch.float64))
    if hidden:
        yield "tokens the reference finds much more likely", torch.log(torch.tensor([0.01, 0.1, 0.3], dtype=torch.float64)), torch.full((3,), math.log(0.95), dtype=torch.float64)
        a = torch.rand(2, 3, 4, generator=gen, dtype=torch.float64).clamp(0.05, 0.95).log()
        yield "three axes (2, 3, 4)", a, a + 0.3 * torch.randn(2, 3, 4, generator=gen, dtype=torch.float64)


def _diagnose_k3(logp, ref, got) -> str:
    if got.shape != logp.shape:
        return " Hint: k3 is per token: return the shape of logp."
    x = ref - logp
    if torch.allclose(got, (-x).exp() + x - 1, atol=1e-6):
        return " Hint: the ratio is inverted. k3 uses r = pi_ref / pi = exp(ref_logp - logp) (tokens were sampled from pi)."
    if torch.allclose(got, -x, atol=1e-6):
        return " Hint: that is k1 = log pi - log pi_ref; k3 adds r - 1 (r = pi_ref / pi), giving r - log r - 1."
    if torch.allclose(got, x.exp() - x, atol=1e-6):
        return " Hint: you forgot the - 1: k3 = r - log r - 1 is 0 where the policy and the reference agree."
    return ""


def check_kl_k3(kl_k3, hidden: bool = False) -> None:
    """Check ``kl_k3(logp, ref_logp)`` against a per-token loop, and that it is never negative."""
    n = 0
    for case, logp, ref in _k3_cases(hidden):
        expected = torch.tensor(_k3_loop(logp.flatten().tolist(), ref.flatten().tolist()), dtype=torch.float64).reshape(logp.shape)
        got = kl_k3(logp.clone(), ref.clone())
        _returned(got, "kl_k3", case)
        try:
            assert_close(got.double(), expected, "kl_k3", case, atol=1e-6, rtol=1e-6)
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_k3(logp, ref, got.double())) from None
        n += 1
    # Unbiased: averaged over tokens drawn from pi, k3 is the exact KL(pi || pi_ref).
    gen = torch.Generator().manual_seed(43 if hidden else 42)
    p = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    q = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    x = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    estimate = float(kl_k3(p.log()[x], q.log()[x]).mean())
    exact = float((p * (p / q).log()).sum())
    if abs(estimate - exact) > 0.005:
        raise AssertionError(f"kl_k3, case 'mean over 200000 tokens sampled from pi': expected the exact KL(pi || pi_ref) = "
                             f"{exact:.4f}, got {estimate:.4f}. k3 must be an unbiased estimator of KL(pi || pi_ref).")
    print(f"kl_k3: all {n} cases pass, and its sample mean matches the exact KL.")


# ---------------------------------------------------------------- sequence mean
def _sequence_mean_loop(per_token: list[list[float]], mask: list[list[int]]) -> float:
    total, n_seq = 0.0, 0
    for row, mrow in zip(per_token, mask):
        n = sum(mrow)
        if n == 0:
            continue
        total += sum(v for v, m in zip(row, mrow) if m) / n
        n_seq += 1
    return total / n_seq


def _sequence_cases(hidden: bool):
    gen = torch.Generator().manual_seed(51 if hidden else 50)
    full = torch.ones(3, 4, dtype=torch.long)
    yield "three completions of equal length, no padding", torch.randn(3, 4, generator=gen), full
    lengths = torch.tensor([5, 2, 1, 4])
    mask = (torch.arange(5)[None, :] < lengths[:, None]).long()
    padded = torch.randn(4, 5, generator=gen).masked_fill(mask == 0, 7.0)  # padding holds junk, not zeros
    yield "completions of lengths 5, 2, 1, 4 (junk in the padding)", padded, mask
    one = torch.tensor([[2.0, 9.0, 9.0]])
    yield "one completion of one token", one, torch.tensor([[1, 0, 0]])
    if hidden:
        lengths = torch.randint(1, 9, (16,), generator=gen)
        mask = (torch.arange(8)[None, :] < lengths[:, None]).long()
        yield "16 completions of random lengths", torch.randn(16, 8, generator=gen).masked_fill(mask == 0, -3.0), mask
        yield "T = 1", torch.randn(5, 1, generator=gen), torch.ones(5, 1, dtype=torch.long)


def _diagnose_sequence_mean(per_token, mask, got) -> str:
    if got.dim() != 0:
        return f" Hint: return a scalar (0-d tensor); got shape {tuple(got.shape)}."
    m = mask.to(per_token.dtype)
    if torch.isclose(got, ((per_token * m).sum() / m.sum()).to(got.dtype), atol=1e-6):
        return " Hint: that is the mean over all tokens of the batch (DAPO's token mean); average each completion first, then the completions."
    if torch.isclose(got, per_token.mean().to(got.dtype), atol=1e-6) or torch.isclose(got, per_token.sum(1).div(per_token.shape[1]).mean().to(got.dtype), atol=1e-6):
        return " Hint: the padding entries were counted; multiply by the mask and divide each row by its own number of tokens."
    if torch.isclose(got, ((per_token * m).sum(1) / per_token.shape[1]).mean().to(got.dtype), atol=1e-6):
        return " Hint: each completion's sum must be divided by its own length mask.sum(-1), not by T."
    return ""


def check_sequence_mean(sequence_mean, hidden: bool = False) -> None:
    """Check ``sequence_mean(per_token, mask)`` against a loop over completions."""
    n = 0
    for case, per_token, mask in _sequence_cases(hidden):
        expected = torch.tensor(_sequence_mean_loop(per_token.tolist(), mask.tolist()), dtype=torch.float64)
        x = per_token.clone().requires_grad_()
        got = sequence_mean(x, mask.clone())
        _returned(got, "sequence_mean", case)
        try:
            assert_close(got.double(), expected, "sequence_mean", case, atol=1e-5, rtol=1e-5)
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_sequence_mean(per_token, mask, got.detach())) from None
        if not got.requires_grad:
            raise AssertionError(f"sequence_mean, case '{case}': the result carries no gradient; it is a loss to back-propagate."
                                 " Do not call .item(), .detach() or torch.no_grad() inside.")
        got.backward()
        lengths = mask.sum(-1, keepdim=True).clamp(min=1)
        expected_grad = mask / lengths / (mask.sum(-1) > 0).sum()
        assert_close(x.grad, expected_grad.to(x.dtype), "sequence_mean (gradient with respect to per_token)", case,
                     atol=1e-6, rtol=1e-5, labels=lambda idx: f"completion {idx[0]}, token {idx[1]}")
        n += 1
    print(f"sequence_mean: all {n} cases pass.")
