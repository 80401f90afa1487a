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

__all__ = ["masked_mean", "ppo_clip_objective", "ppo_clip_loss", "ppo_penalty_loss", "adaptive_kl_beta"]


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
