"""Policy-optimisation losses, one function per loss (no string-selected variants).

Every loss returns the quantity to *minimise*: the negated objective of the
paper, averaged over the entries that count. Inputs are per-sample arrays with
time on the last axis, any leading batch axes; ``mask`` (same shape, bool or
0/1) marks the entries that count (padding and reset steps are 0).
Torch in, torch out (so autograd flows); numpy in, numpy out (for plots).

Chapter 9 adds the PPO losses and the adaptive KL coefficient; later
chapters add their own losses here.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["masked_mean", "ppo_clip_objective", "ppo_clip_loss", "ppo_penalty_loss", "adaptive_kl_beta", "dpo_loss", "kl_k1", "kl_k2", "kl_k3"]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _check_same_shape(reference_name: str, reference, **others) -> None:
    shape = tuple(reference.shape)
    for name, value in others.items():
        if value is not None and tuple(value.shape) != shape:
            raise ValueError(f"{name} must have the shape of {reference_name} {shape}; got shape {tuple(value.shape)}")


def masked_mean(x, mask=None):
    """Mean of ``x`` over the entries where ``mask`` is true (all entries when mask is None).

    x: array (...,); mask: bool or 0/1 array of the same shape. Returns a scalar
    (0-d tensor for torch input, so it can be back-propagated).

    >>> masked_mean(np.array([1.0, 2.0, 9.0]), np.array([True, True, False]))
    1.5
    """
    torch_in = _is_torch(x)
    if not torch_in:
        x = np.asarray(x, dtype=np.float64)
    if mask is None:
        return x.mean() if torch_in else float(x.mean())
    _check_same_shape("x", x, mask=mask)
    weight = mask.to(x.dtype) if torch_in else np.asarray(mask, dtype=np.float64)
    count = weight.sum()
    if float(count) <= 0:
        raise ValueError("mask must mark at least one entry as valid; it is all false")
    mean = (x * weight).sum() / count
    return mean if torch_in else float(mean)


def ppo_clip_objective(ratio, advantages, eps: float):
    """Per-sample clipped surrogate of PPO (Schulman et al. 2017, eq. 7), to be maximised.

        L_t = min(r_t * A_t, clip(r_t, 1 - eps, 1 + eps) * A_t)

    ratio: r_t = pi_new(a_t|s_t) / pi_old(a_t|s_t), shape (..., T); advantages: same shape;
    eps > 0. Returns shape (..., T). For A > 0 the objective stops rising once r > 1 + eps;
    for A < 0 it stops rising once r < 1 - eps. Outside those regions it is the plain
    surrogate r * A, so a ratio that moved the wrong way is never clipped.

    >>> ppo_clip_objective(np.array([3.0, 3.0, 0.5]), np.array([1.0, -1.0, -1.0]), eps=0.2)
    array([ 1.2, -3. , -0.8])
    """
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (the clip range is [1 - eps, 1 + eps]); got {eps}")
    _check_same_shape("ratio", ratio, advantages=advantages)
    if _is_torch(ratio):
        import torch

        return torch.minimum(ratio * advantages, torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * advantages)
    ratio, advantages = np.asarray(ratio, dtype=np.float64), np.asarray(advantages, dtype=np.float64)
    return np.minimum(ratio * advantages, np.clip(ratio, 1.0 - eps, 1.0 + eps) * advantages)


def ppo_clip_loss(logp, old_logp, advantages, eps: float, mask=None):
    """The PPO-clip loss: minus the clipped surrogate, averaged over the unmasked entries.

        r_t = exp(logp_t - old_logp_t),   loss = - mean_t min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)

    logp: log pi_theta(a_t|s_t) of the actions actually taken, shape (..., T), carrying
    the gradient; old_logp: the same under the policy that collected the data, shape
    (..., T); advantages: shape (..., T); mask: optional bool (..., T). ``old_logp`` and
    ``advantages`` are constants of the update, so they are detached here: only ``logp``
    moves. Returns a scalar.

    At ratio 1 (the first minibatch of an update) the gradient is that of the plain
    policy-gradient loss -mean(A * logp), since d r / d theta = r * d logp / d theta.

    >>> ppo_clip_loss(np.log([0.3]), np.log([0.1]), np.array([2.0]), eps=0.2)   # r = 3 clipped to 1.2
    -2.4
    """
    _check_same_shape("logp", logp, old_logp=old_logp, advantages=advantages, mask=mask)
    if _is_torch(logp):
        ratio = (logp - old_logp.detach()).exp()
        advantages = advantages.detach()
    else:
        ratio = np.exp(np.asarray(logp, dtype=np.float64) - np.asarray(old_logp, dtype=np.float64))
    loss = -masked_mean(ppo_clip_objective(ratio, advantages, eps), mask)
    return loss if _is_torch(loss) else float(loss)


def ppo_penalty_loss(logp, old_logp, advantages, kl, beta: float, mask=None):
    """The PPO-penalty loss: minus (surrogate - beta * KL), averaged over the unmasked entries.

        loss = - mean_t [ r_t A_t - beta * KL_t ],   r_t = exp(logp_t - old_logp_t)

    logp, old_logp, advantages: shape (..., T) as in ``ppo_clip_loss``; kl: the per-state
    divergence KL(pi_old(.|s_t) || pi_theta(.|s_t)), shape (..., T), carrying the gradient;
    beta >= 0, adapted between updates by ``adaptive_kl_beta``. Returns a scalar.

    >>> round(ppo_penalty_loss(np.log([0.3]), np.log([0.1]), np.array([2.0]), np.array([0.5]), beta=1.0), 6)
    -5.5
    """
    beta = float(beta)
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0; got {beta}")
    _check_same_shape("logp", logp, old_logp=old_logp, advantages=advantages, kl=kl, mask=mask)
    if _is_torch(logp):
        surrogate = (logp - old_logp.detach()).exp() * advantages.detach()
    else:
        surrogate = np.exp(np.asarray(logp, dtype=np.float64) - np.asarray(old_logp, dtype=np.float64)) * advantages
    loss = -masked_mean(surrogate - beta * kl, mask)
    return loss if _is_torch(loss) else float(loss)


def adaptive_kl_beta(beta: float, kl: float, target: float) -> float:
    """The adaptive penalty coefficient of PPO's KL-penalty variant (Schulman et al. 2017, sec. 4).

        beta / 2   if kl < target / 1.5   (the policy barely moved: penalise less)
        beta * 2   if kl > target * 1.5   (it moved too far: penalise more)
        beta       otherwise

    beta > 0: the current coefficient; kl: the mean KL measured after the update;
    target > 0: the KL the rule steers towards (delta in the paper, d_targ in the notes).

    >>> adaptive_kl_beta(1.0, kl=0.001, target=0.01), adaptive_kl_beta(1.0, kl=0.02, target=0.01)
    (0.5, 2.0)
    """
    beta, kl, target = float(beta), float(kl), float(target)
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number > 0; got {beta}")
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"target must be a finite KL > 0; got {target}")
    if not math.isfinite(kl):
        raise ValueError(f"kl must be finite; got {kl}")
    if kl < target / 1.5:
        return beta / 2.0
    if kl > target * 1.5:
        return beta * 2.0
    return beta


def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta: float):
    """The DPO loss (Rafailov et al. 2023, eq. 7): Bradley-Terry on the policy's implicit rewards.

        h_b  = beta * [ (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)) ]
        loss = - mean_b log sigmoid(h_b)

    Each argument has shape (B,): the log-probability of a whole completion (its token
    log-probs summed over the completion's real tokens), under the policy (carrying the
    gradient) or the frozen reference, for the chosen y_w and the rejected y_l of pair b.
    beta > 0 is the strength of the KL tie to the reference. ``log sigmoid`` is computed
    stably (``logsigmoid`` / ``-logaddexp(0, -h)``): log(sigmoid(h)) underflows to -inf for
    h below about -100 in float32. Returns a scalar (0-d tensor for torch input).

    At the start of training the policy equals the reference, h = 0 and the loss is log 2.

    >>> round(dpo_loss(np.array([-2.0]), np.array([-3.0]), np.array([-2.5]), np.array([-2.5]), beta=0.5), 6)
    0.474077
    """
    beta = float(beta)
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number > 0; got {beta}")
    torch_in = _is_torch(policy_chosen_logps)
    if not torch_in:
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps = (
            np.asarray(x, dtype=np.float64)
            for x in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps))
    if policy_chosen_logps.ndim != 1:
        raise ValueError("policy_chosen_logps must have shape (B,): one summed log-prob per pair; "
                         f"got shape {tuple(policy_chosen_logps.shape)}")
    if policy_chosen_logps.shape[0] == 0:
        raise ValueError("policy_chosen_logps must hold at least one pair; got B = 0")
    _check_same_shape("policy_chosen_logps", policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                      ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    if torch_in:  # the reference is frozen: its log-probs are constants of the loss
        ref_chosen_logps, ref_rejected_logps = ref_chosen_logps.detach(), ref_rejected_logps.detach()
    h = beta * ((policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps))
    if torch_in:
        import torch.nn.functional as F

        return -F.logsigmoid(h).mean()
    return float(np.logaddexp(0.0, -h).mean())


# ---------------------------------------------------------------- KL estimators (chapter 13)
# Schulman, "Approximating KL divergence" (2020, joschu.net/blog/kl-approx.html). With tokens
# x ~ pi and the log-ratio log r = log pi_ref(x) - log pi(x), three per-sample estimators of
# KL(pi || pi_ref) = E_pi[log pi(x) - log pi_ref(x)]:
#   k1 = -log r                  unbiased, high variance, negative on some samples;
#   k2 = (log r)^2 / 2           biased (exact to second order), low variance, >= 0;
#   k3 = (r - 1) - log r         unbiased (E_pi[r] = 1), low variance, >= 0 (since log r <= r - 1).
# GRPO (Shao et al. 2024, DeepSeekMath, eq. 4) puts k3 of every sampled token in its loss.
def _log_ratio(logp, ref_logp):
    """log pi_ref(x) - log pi(x), torch in torch out, numpy in numpy out; shapes must agree."""
    _check_same_shape("logp", logp, ref_logp=ref_logp)
    if _is_torch(logp):
        return ref_logp - logp
    return np.asarray(ref_logp, dtype=np.float64) - np.asarray(logp, dtype=np.float64)


def kl_k1(logp, ref_logp):
    """Per-sample KL estimator k1 = log pi(x) - log pi_ref(x) (the plain log-ratio).

    logp: log pi(x) of tokens sampled from pi, shape (..., T); ref_logp: log pi_ref(x) of the
    same tokens, same shape. Returns shape (..., T); its mean over x ~ pi is KL(pi || pi_ref).
    Unbiased but noisy, and a single sample can be negative though the KL never is.

    >>> kl_k1(np.log([0.5, 0.25]), np.log([0.25, 0.5]))
    array([ 0.69314718, -0.69314718])
    """
    return -_log_ratio(logp, ref_logp)


def kl_k2(logp, ref_logp):
    """Per-sample KL estimator k2 = (log pi(x) - log pi_ref(x))^2 / 2.

    Shapes as in ``kl_k1``. Never negative and much less noisy than k1, but biased: its mean
    matches KL(pi || pi_ref) only to second order in the log-ratio (it is an f-divergence
    whose Taylor expansion agrees with the KL's up to that order).

    >>> kl_k2(np.log([0.5, 0.25]), np.log([0.25, 0.5]))
    array([0.24022651, 0.24022651])
    """
    log_r = _log_ratio(logp, ref_logp)
    return 0.5 * log_r**2


def kl_k3(logp, ref_logp):
    """Per-sample KL estimator k3 = pi_ref(x)/pi(x) - log(pi_ref(x)/pi(x)) - 1 (GRPO's KL term).

    Shapes as in ``kl_k1``; ``ref_logp`` is log pi_ref of the tokens that pi sampled. With
    r = pi_ref/pi: E_pi[r] = 1, so E_pi[r - 1] = 0 and k3 is k1 plus a zero-mean control
    variate: unbiased, never negative (log r <= r - 1), and low variance.

    >>> kl_k3(np.log([0.5, 0.25]), np.log([0.25, 0.5]))    # r = 0.5 and r = 2
    array([0.19314718, 0.30685282])
    """
    log_r = _log_ratio(logp, ref_logp)
    if _is_torch(log_r):
        return log_r.exp() - log_r - 1.0
    return np.exp(log_r) - log_r - 1.0
