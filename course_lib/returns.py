"""Returns computed from reward sequences.

Convention used throughout the course: time is the last axis and
``rewards[..., t]`` is the reward R_{t+1} received after the action at step t
(Sutton and Barto's indexing; some notes write it R_t). ``dones[..., t]`` is
true when the episode ended with that reward, so nothing after it is added in.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["discounted_returns", "td_errors", "gae"]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def check_gamma(gamma) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1]; got {gamma}")
    return gamma


def discounted_returns(rewards, gamma: float, dones=None):
    """G_t = R_{t+1} + gamma * (1 - done_t) * G_{t+1}, computed backwards in time.

    Parameters
    ----------
    rewards : numpy array or torch tensor of shape (..., T)
        Time on the last axis, any leading batch axes.
    gamma : float in [0, 1]
    dones : bool array of shape (..., T), optional
        ``dones[..., t]`` ends an episode after step t: G_t does not look past it.
        The last step never bootstraps (the sequence simply stops there).

    Returns
    -------
    Returns of the same shape and type (numpy in, numpy out; torch in, torch out).

    Example
    -------
    >>> discounted_returns(np.array([1.0, 1.0, 1.0]), gamma=0.5)
    array([1.75, 1.5 , 1.  ])
    >>> discounted_returns(np.array([1.0, 1.0, 1.0]), 0.5, dones=np.array([0, 1, 0]))
    array([1.5, 1. , 1. ])
    """
    gamma = check_gamma(gamma)
    if not _is_torch(rewards):
        rewards = np.asarray(rewards)
        dones = None if dones is None else np.asarray(dones)
    if rewards.ndim < 1 or rewards.shape[-1] == 0:
        raise ValueError(f"rewards must have shape (..., T) with T >= 1; got shape {tuple(rewards.shape)}")
    if dones is not None and tuple(dones.shape) != tuple(rewards.shape):
        raise ValueError(
            f"dones must have the shape of rewards {tuple(rewards.shape)}; got shape {tuple(dones.shape)}"
        )
    T = rewards.shape[-1]
    if _is_torch(rewards):
        import torch

        if not torch.is_floating_point(rewards):
            rewards = rewards.to(torch.get_default_dtype())
        if dones is not None:
            dones = torch.as_tensor(dones, device=rewards.device)
        keep = torch.full_like(rewards, gamma)
        if dones is not None:
            keep = keep * (~dones.bool()).to(rewards.dtype)
        out = torch.empty_like(rewards)
        # The loop runs over time only; every batch element advances at once.
        # Writing into a fresh tensor keeps autograd intact (no in-place on inputs).
        g = rewards[..., T - 1]
        out[..., T - 1] = g
        for t in range(T - 2, -1, -1):
            g = rewards[..., t] + keep[..., t] * g
            out[..., t] = g
        return out

    dtype = np.result_type(rewards.dtype, np.float64) if rewards.dtype.kind in "biu" else rewards.dtype
    # Time first, batch flattened to one axis: each step of the backward sweep then
    # works on one row holding every batch element, with no temporaries (out=).
    r = np.moveaxis(rewards, -1, 0).reshape(T, -1)                    # (T, N)
    keep = np.full(r.shape, gamma, dtype=dtype)
    if dones is not None:
        keep[np.moveaxis(dones, -1, 0).reshape(T, -1).astype(bool)] = 0.0
    out = np.empty(r.shape, dtype=dtype)
    out[T - 1] = r[T - 1]
    for t in range(T - 2, -1, -1):
        np.multiply(keep[t], out[t + 1], out=out[t])
        out[t] += r[t]
    batch_shape = rewards.shape[:-1]
    return np.ascontiguousarray(np.moveaxis(out.reshape((T,) + batch_shape), 0, -1))


def _check_values(rewards, values, dones):
    if rewards.ndim < 1 or rewards.shape[-1] == 0:
        raise ValueError(f"rewards must have shape (..., T) with T >= 1; got shape {tuple(rewards.shape)}")
    expected = tuple(rewards.shape[:-1]) + (rewards.shape[-1] + 1,)
    if tuple(values.shape) != expected:
        raise ValueError(
            f"values must have shape (..., T + 1) = {expected} (the last entry bootstraps the state after "
            f"step T - 1); got shape {tuple(values.shape)}"
        )
    if dones is not None and tuple(dones.shape) != tuple(rewards.shape):
        raise ValueError(f"dones must have the shape of rewards {tuple(rewards.shape)}; got shape {tuple(dones.shape)}")


def td_errors(rewards, values, gamma: float, dones=None):
    """delta_t = r_t + gamma * (1 - done_t) * V(s_{t+1}) - V(s_t).

    rewards, dones: shape (..., T); values: shape (..., T + 1), where
    ``values[..., T]`` is the bootstrap value of the state after the last step.
    A done at step t means s_{t+1} is terminal (or the start of a new episode),
    so its value is not added. Numpy in, numpy out; torch in, torch out.

    >>> td_errors(np.array([1.0, 1.0]), np.array([0.5, 0.5, 2.0]), gamma=0.5)
    array([0.75, 1.5 ])
    """
    gamma = check_gamma(gamma)
    if not _is_torch(rewards):
        rewards, values = np.asarray(rewards, dtype=np.float64), np.asarray(values, dtype=np.float64)
        dones = None if dones is None else np.asarray(dones)
    _check_values(rewards, values, dones)
    next_values = values[..., 1:]
    if dones is not None:
        not_done = (~dones.bool()).to(rewards.dtype) if _is_torch(rewards) else 1.0 - dones.astype(np.float64)
        next_values = next_values * not_done
    return rewards + gamma * next_values - values[..., :-1]


@functools.cache
def _compiled_gae():
    """The GAE recursion as one compiled pass over the data (numba), built on first use.

    Each sequence is swept backwards once: read r_t, V(s_t), V(s_{t+1}) and done_t,
    write A_t. No temporaries, so the sweep runs at close to memory speed; the
    numpy formulation (``td_errors`` then ``discounted_returns``) makes a dozen
    passes over the data and pays numpy's per-call overhead at every time step.
    Compiled once per dtype and cached on disk next to this file.
    """
    import numba

    @numba.njit(cache=True, nogil=True)
    def sweep(rewards, values, dones, has_dones, gamma, lam, out):  # pragma: no cover - compiled
        n_rows, T = rewards.shape
        gl = gamma * lam
        for n in range(n_rows):
            a = 0.0
            for t in range(T - 1, -1, -1):
                keep = 1.0
                if has_dones and dones[n, t]:
                    keep = 0.0
                delta = rewards[n, t] + gamma * keep * values[n, t + 1] - values[n, t]
                a = delta + gl * keep * a
                out[n, t] = a

    return sweep


def gae(rewards, values, gamma: float, lam: float, dones=None):
    """Generalised advantage estimates (Schulman et al. 2016, eq. 16), backwards in time.

    A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}, with delta_t from ``td_errors``.
    lam = 0 gives the TD errors; lam = 1 gives bootstrapped discounted returns minus values.

    rewards, dones: shape (..., T); values: shape (..., T + 1). Returns shape (..., T),
    numpy in, numpy out (float32 stays float32); torch in, torch out (differentiable).

    Torch tensors go through ``td_errors`` and ``discounted_returns``, the formula as
    written. Numpy arrays take a compiled single pass of the same recursion
    (``_compiled_gae``), which is what makes GAE cheap next to the rollout that feeds it
    (``benchmarks/bench_ch07_gae.py``); the tests hold both to the same plain loop.

    >>> float(gae(np.array([1.2, 0.3, 0.8, -0.2]), np.zeros(5), gamma=1.0, lam=0.5)[0])   # the notes' worked example
    1.525
    """
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1]; got {lam}")
    if _is_torch(rewards):
        delta = td_errors(rewards, values, gamma, dones)
        return discounted_returns(delta, float(gamma) * lam, dones)

    gamma = check_gamma(gamma)
    rewards, values = np.asarray(rewards), np.asarray(values)
    dones = None if dones is None else np.asarray(dones)
    _check_values(rewards, values, dones)
    dtype = np.result_type(rewards.dtype, values.dtype, np.float32)
    if dtype.kind != "f" or dtype.itemsize > 8:
        dtype = np.dtype(np.float64)
    T = rewards.shape[-1]
    r = np.ascontiguousarray(rewards.reshape(-1, T), dtype=dtype)
    v = np.ascontiguousarray(values.reshape(-1, T + 1), dtype=dtype)
    d = np.zeros((1, 1), dtype=bool) if dones is None else np.ascontiguousarray(dones.reshape(-1, T), dtype=bool)
    out = np.empty(r.shape, dtype=dtype)
    _compiled_gae()(r, v, d, dones is not None, gamma, lam, out)
    return out.reshape(rewards.shape)
