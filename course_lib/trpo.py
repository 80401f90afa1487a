"""The pieces of Trust Region Policy Optimisation (Schulman et al. 2015), one function each.

TRPO maximises the surrogate L(theta) = E[ratio * A] subject to
mean_s KL(pi_old(.|s) || pi_theta(.|s)) <= delta. Linearising L and taking the
KL to second order gives the step  theta_new = theta + sqrt(2 delta / s^T F s) s
with s = F^{-1} g, where g is the gradient of L and F the Fisher information
(the Hessian of the mean KL at theta_old). The functions below compute each part:

* ``conjugate_gradient``: s = F^{-1} g from products F v only (F is never built);
* ``make_fisher_vector_product``: v -> (F + damping I) v by differentiating the KL twice;
* ``trust_region_step``: scale s so that the quadratic KL model equals delta;
* ``backtracking_line_search``: shrink the step until the true KL is within delta
  and the surrogate really improves;
* ``categorical_kl`` and the flat-parameter helpers they need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "conjugate_gradient",
    "categorical_kl",
    "flat_params",
    "set_flat_params",
    "flat_grad",
    "make_fisher_vector_product",
    "trust_region_step",
    "LineSearchResult",
    "backtracking_line_search",
]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _dot(a, b) -> float:
    return float((a * b).sum())


def conjugate_gradient(Avp, b, iters: int, tol: float = 1e-10):
    """Approximately solve A x = b for a symmetric positive definite A, given only v -> A v.

    The conjugate-gradient method (Hestenes and Stiefel 1952; Nocedal and Wright,
    *Numerical Optimization*, Algorithm 5.2). Starting from x = 0, each iteration
    moves along a direction p that is A-conjugate to all earlier ones:

        alpha = r^T r / p^T A p,  x += alpha p,  r -= alpha A p,  p = r + (r_new^T r_new / r^T r) p

    so after k iterations x minimises the quadratic 1/2 x^T A x - b^T x over the first
    k Krylov directions, and in exact arithmetic n iterations solve an n x n system.
    TRPO runs ~10 iterations against a Fisher matrix with thousands of rows: one
    product A v costs about as much as a gradient, and building A would cost n of them.

    Avp: callable, vector of shape (n,) -> A @ vector of shape (n,);
    b: numpy array or torch tensor of shape (n,); iters >= 1: the maximum number of
    iterations; tol: stop once ||r|| <= tol * ||b||. Returns x, shape (n,), same type as b.

    >>> A = np.array([[4.0, 1.0], [1.0, 3.0]])
    >>> conjugate_gradient(lambda v: A @ v, np.array([1.0, 2.0]), iters=2).round(6)
    array([0.090909, 0.636364])
    """
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be an integer >= 1; got {iters!r}")
    if not _is_torch(b):
        b = np.asarray(b, dtype=np.float64)
    if b.ndim != 1 or b.shape[0] == 0:
        raise ValueError(f"b must be a non-empty vector of shape (n,); got shape {tuple(b.shape)}")
    x = b * 0
    r = b.clone() if _is_torch(b) else b.copy()  # residual b - A x, with x = 0
    p = r.clone() if _is_torch(r) else r.copy()
    rr = _dot(r, r)
    stop = (tol * math.sqrt(rr)) ** 2
    if rr == 0.0:
        return x
    for k in range(int(iters)):
        Ap = Avp(p)
        if tuple(Ap.shape) != tuple(b.shape):
            raise ValueError(f"Avp must return a vector of shape {tuple(b.shape)}; got shape {tuple(Ap.shape)}")
        pAp = _dot(p, Ap)
        if not pAp > 0:
            raise ValueError(
                f"Avp is not positive definite: p^T A p = {pAp:.3g} at iteration {k} "
                "(for a Fisher matrix, add damping)"
            )
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = _dot(r, r)
        if rr_new <= stop:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def categorical_kl(logits_p, logits_q):
    """KL(p || q) = sum_a p_a (log p_a - log q_a) between categorical distributions given by logits.

    logits_p, logits_q: shape (..., A) (unnormalised log-probabilities; the
    normalisation is done here). Returns shape (...): one divergence per state.
    Torch in, torch out (differentiable in both arguments); numpy in, numpy out.

    >>> float(categorical_kl(np.log([0.5, 0.5]), np.log([0.9, 0.1])).round(4))
    0.5108
    """
    if tuple(logits_p.shape) != tuple(logits_q.shape):
        raise ValueError(
            f"logits_q must have the shape of logits_p {tuple(logits_p.shape)}; got shape {tuple(logits_q.shape)}"
        )
    if len(logits_p.shape) < 1 or logits_p.shape[-1] < 1:
        raise ValueError(f"logits must have shape (..., A) with A >= 1; got shape {tuple(logits_p.shape)}")
    if _is_torch(logits_p):
        import torch

        log_p = torch.log_softmax(logits_p, dim=-1)
        log_q = torch.log_softmax(logits_q, dim=-1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    logits_p, logits_q = np.asarray(logits_p, dtype=np.float64), np.asarray(logits_q, dtype=np.float64)
    log_p = logits_p - np.logaddexp.reduce(logits_p, axis=-1, keepdims=True)
    log_q = logits_q - np.logaddexp.reduce(logits_q, axis=-1, keepdims=True)
    return (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)


# ---------------------------------------------------------------- flat parameters
def flat_params(params):
    """All parameters as one detached vector of shape (n,), in the order given."""
    import torch

    params = list(params)
    return torch.cat([p.detach().reshape(-1) for p in params])


def set_flat_params(params, flat) -> None:
    """Copy the vector ``flat`` of shape (n,) into ``params`` (in place, outside autograd)."""
    import torch

    params = list(params)
    n = sum(p.numel() for p in params)
    if tuple(flat.shape) != (n,):
        raise ValueError(f"flat must have shape ({n},), one entry per parameter; got shape {tuple(flat.shape)}")
    with torch.no_grad():
        offset = 0
        for p in params:
            p.copy_(flat[offset: offset + p.numel()].view_as(p))
            offset += p.numel()


def flat_grad(output, params, create_graph: bool = False, retain_graph: bool | None = None):
    """d output / d params as one vector of shape (n,); parameters ``output`` does not use get zeros."""
    import torch

    params = list(params)
    grads = torch.autograd.grad(output, params, create_graph=create_graph, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def make_fisher_vector_product(kl, params, damping: float = 0.1):
    """Return v -> (F + damping I) v, where F is the Hessian of ``kl`` with respect to ``params``.

    kl: a scalar tensor, mean_s KL(pi_old(.|s) || pi_theta(.|s)) with pi_old's logits
    detached, evaluated at theta = theta_old. Its gradient there is zero and its Hessian
    is the Fisher information of the policy averaged over the states,

        F = mean_s E_{a ~ pi(.|s)} [ grad log pi(a|s) grad log pi(a|s)^T ],

    so F v = d/dtheta ( (d kl / d theta) . v ): two backward passes, no n x n matrix
    (Pearlmutter 1994). The first gradient, with its graph, is built once here and
    reused by every product. damping >= 0 adds damping * v, which keeps CG stable
    where F is nearly singular (Schulman et al. use 0.1).

    Returns a callable taking and returning a vector of shape (n,).
    """
    damping = float(damping)
    if not damping >= 0:
        raise ValueError(f"damping must be >= 0; got {damping}")
    if kl.dim() != 0:
        raise ValueError(f"kl must be a scalar (the mean KL over states); got shape {tuple(kl.shape)}")
    params = list(params)
    grad_kl = flat_grad(kl, params, create_graph=True)
    n = grad_kl.shape[0]

    def fisher_vector_product(v):
        if tuple(v.shape) != (n,):
            raise ValueError(f"v must have shape ({n},); got shape {tuple(v.shape)}")
        Fv = flat_grad((grad_kl * v.detach()).sum(), params, retain_graph=True)
        return Fv + damping * v

    return fisher_vector_product


def trust_region_step(direction, Fdirection, max_kl: float):
    """Scale a search direction s so the quadratic KL model 1/2 x^T F x equals max_kl.

        step = sqrt(2 max_kl / (s^T F s)) * s

    direction: s of shape (n,) (from ``conjugate_gradient``); Fdirection: F s, shape (n,);
    max_kl > 0: the trust-region radius delta. Returns the full step, shape (n,).

    >>> trust_region_step(np.array([1.0, 0.0]), np.array([2.0, 0.0]), max_kl=0.01)
    array([0.1, 0. ])
    """
    max_kl = float(max_kl)
    if not max_kl > 0:
        raise ValueError(f"max_kl must be > 0; got {max_kl}")
    if tuple(direction.shape) != tuple(Fdirection.shape):
        raise ValueError(
            f"Fdirection must have the shape of direction {tuple(direction.shape)}; got shape {tuple(Fdirection.shape)}"
        )
    sFs = _dot(direction, Fdirection)
    if not sFs > 0:
        raise ValueError(f"s^T F s must be > 0 for a positive definite F; got {sFs:.3g}")
    return math.sqrt(2.0 * max_kl / sFs) * direction


@dataclass
class LineSearchResult:
    """What ``backtracking_line_search`` found."""

    step: object  # the accepted step (fraction * fullstep), or zeros when every try failed
    fraction: float  # the accepted fraction of the full step; 0.0 when none was accepted
    accepted: bool  # whether some fraction passed both tests
    trials: list = field(default_factory=list)  # one dict per try: fraction, improvement, expected, kl, accepted


def backtracking_line_search(
    evaluate,
    fullstep,
    expected_improve: float,
    max_kl: float,
    max_backtracks: int = 10,
    shrink: float = 0.5,
    accept_ratio: float = 0.1,
) -> LineSearchResult:
    """Try fractions 1, shrink, shrink^2, ... of ``fullstep`` until one passes both TRPO tests.

    The step came from two approximations (a linear surrogate, a quadratic KL), so
    before taking it we measure the real thing. A fraction f passes when

        kl(f) <= max_kl                                         (the trust region holds)
        improvement(f) > 0 and improvement(f) >= accept_ratio * f * expected_improve
                                                                (the surrogate really rose)

    evaluate: callable, step of shape (n,) -> (improvement, kl): the change of the
    surrogate and the mean KL after moving the parameters by that step (it must leave
    them where it found them). fullstep: shape (n,); expected_improve > 0: g . fullstep,
    the improvement the linear model predicts for the full step. Returns a
    ``LineSearchResult``; when no fraction passes, the step is zero (keep the old policy).
    """
    expected_improve = float(expected_improve)
    if not expected_improve > 0:
        raise ValueError(f"expected_improve must be > 0 (g . fullstep of an ascent step); got {expected_improve}")
    if not 0 < shrink < 1:
        raise ValueError(f"shrink must be in (0, 1); got {shrink}")
    if max_backtracks < 1:
        raise ValueError(f"max_backtracks must be >= 1; got {max_backtracks}")
    max_kl = float(max_kl)
    if not max_kl > 0:
        raise ValueError(f"max_kl must be > 0; got {max_kl}")
    trials = []
    for k in range(max_backtracks):
        fraction = shrink**k
        improvement, kl = evaluate(fraction * fullstep)
        improvement, kl = float(improvement), float(kl)
        expected = fraction * expected_improve
        ok = kl <= max_kl and improvement > 0 and improvement >= accept_ratio * expected
        trials.append(dict(fraction=fraction, improvement=improvement, expected=expected, kl=kl, accepted=ok))
        if ok:
            return LineSearchResult(fraction * fullstep, fraction, True, trials)
    return LineSearchResult(fullstep * 0, 0.0, False, trials)
