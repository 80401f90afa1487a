"""Checks for exercise 6: the softmax score, per-episode REINFORCE estimates, the REINFORCE loss.

References are plain loops over episodes, steps and entries, written from the
formulas and independent of ``course_lib.pg``.
"""

from __future__ import annotations

import math

import numpy as np

from . import assert_close

__all__ = ["check_softmax_score", "check_reinforce_estimates", "check_reinforce_loss"]


def _softmax_row(row) -> list[float]:
    top = max(row)
    z = [math.exp(x - top) for x in row]
    return [x / sum(z) for x in z]


def _theta_labels(idx) -> str:
    if len(idx) == 3:
        return f"episode {idx[0]}, theta[{idx[1]}, {idx[2]}]"
    return f"theta[{idx[0]}, {idx[1]}]"


# ---------------------------------------------------------------- the score
def _score_loop(theta: np.ndarray, s: int, a: int) -> np.ndarray:
    """d log pi(a|s) / d theta[i, b] = 1[i = s] (1[b = a] - pi(b|s))."""
    S, A = theta.shape
    out = np.zeros((S, A))
    pi_s = _softmax_row(list(theta[s]))
    for b in range(A):
        out[s, b] = (1.0 if b == a else 0.0) - pi_s[b]
    return out


def _score_cases(hidden: bool):
    rng = np.random.default_rng(61 if hidden else 60)
    yield "uniform policy, 1 state, 2 actions", np.zeros((1, 2)), 0, 1
    yield "3 states x 2 actions, random preferences", rng.normal(size=(3, 2)), 1, 0
    yield "4 states x 3 actions, last state", rng.normal(size=(4, 3)), 3, 2
    if hidden:
        yield "large preferences (needs a stable softmax)", 1000.0 + 300.0 * rng.normal(size=(2, 4)), 0, 3
        yield "5 states x 4 actions", rng.normal(size=(5, 4)), 2, 1


def check_softmax_score(softmax_score, hidden: bool = False) -> None:
    """Check ``softmax_score(theta, s, a)`` = grad_theta log pi(a|s), shape (S, A), against a loop."""
    n = 0
    for case, theta, s, a in _score_cases(hidden):
        got = softmax_score(theta.copy(), s, a)
        assert_close(got, _score_loop(theta, s, a), "softmax_score", case, atol=1e-8, labels=_theta_labels)
        n += 1
    print(f"softmax_score: all {n} cases pass.")


# ---------------------------------------------------------------- per-episode REINFORCE estimates
def _estimates_loop(theta, states, actions, rewards, mask, gamma, baseline) -> np.ndarray:
    """g_e = sum_t gamma^t (G_t - b(s_t)) grad log pi(a_t|s_t), one episode and one step at a time."""
    E, T = states.shape
    S, A = theta.shape
    out = np.zeros((E, S, A))
    for e in range(E):
        G = [0.0] * T
        g = 0.0
        for t in reversed(range(T)):
            g = (rewards[e, t] if mask[e, t] else 0.0) + gamma * g
            G[t] = g
        for t in range(T):
            if not mask[e, t]:
                continue
            s, a = int(states[e, t]), int(actions[e, t])
            weight = gamma**t * (G[t] - baseline[s])
            out[e] += weight * _score_loop(theta, s, a)
    return out


def _episode_batch(rng, E, T, S, A, ragged=True):
    states = rng.integers(S, size=(E, T))
    actions = rng.integers(A, size=(E, T))
    rewards = rng.normal(size=(E, T)) + 1.0
    lengths = rng.integers(1, T + 1, size=E) if ragged else np.full(E, T)
    mask = np.arange(T)[None, :] < lengths[:, None]
    states[~mask], actions[~mask], rewards[~mask] = 0, 0, 0.0  # padding, as sample_episodes writes it
    return states, actions, rewards, mask


def _estimate_cases(hidden: bool):
    rng = np.random.default_rng(63 if hidden else 62)
    theta = np.zeros((2, 2))
    yield ("one episode of two steps, uniform policy, no baseline", theta,
           np.array([[0, 1]]), np.array([[1, 0]]), np.array([[1.0, 2.0]]), np.array([[True, True]]), 0.5, np.zeros(2))
    yield ("the same episode with a baseline b = (1, 3)", theta,
           np.array([[0, 1]]), np.array([[1, 0]]), np.array([[1.0, 2.0]]), np.array([[True, True]]), 0.5,
           np.array([1.0, 3.0]))
    th = rng.normal(size=(4, 3))
    yield ("4 full episodes, random policy and baseline", th, *_episode_batch(rng, 4, 6, 4, 3, ragged=False), 0.9,
           rng.normal(size=4))
    yield ("6 episodes of different lengths (mask)", th, *_episode_batch(rng, 6, 8, 4, 3), 0.8, rng.normal(size=4))
    if hidden:
        th = rng.normal(size=(5, 2))
        yield "gamma = 1", th, *_episode_batch(rng, 5, 7, 5, 2), 1.0, rng.normal(size=5)
        yield "gamma = 0 (only the next reward counts)", th, *_episode_batch(rng, 3, 5, 5, 2), 0.0, rng.normal(size=5)
        yield "one step per episode", th, *_episode_batch(rng, 4, 1, 5, 2), 0.9, rng.normal(size=5)


def check_reinforce_estimates(reinforce_estimates, hidden: bool = False) -> None:
    """Check ``reinforce_estimates(theta, states, actions, rewards, mask, gamma, baseline)``, shape (E, S, A)."""
    n = 0
    for case, theta, states, actions, rewards, mask, gamma, baseline in _estimate_cases(hidden):
        expected = _estimates_loop(theta, states, actions, rewards, mask, gamma, baseline)
        got = reinforce_estimates(theta.copy(), states.copy(), actions.copy(), rewards.copy(), mask.copy(), gamma,
                                  baseline.copy())
        try:
            assert_close(got, expected, "reinforce_estimates", case, atol=1e-8, labels=_theta_labels)
        except AssertionError as err:
            wrong_sign = _estimates_loop(theta, states, actions, rewards, mask, gamma, -baseline)
            if isinstance(got, np.ndarray) and got.shape == expected.shape and np.any(baseline != 0) and np.allclose(got, wrong_sign, atol=1e-8):
                raise AssertionError(f"{err}\nHint: your numbers match G_t + b(s_t): the baseline is subtracted, G_t - b(s_t).") from None
            raise
        n += 1
    print(f"reinforce_estimates: all {n} cases pass.")


# ---------------------------------------------------------------- the REINFORCE loss (torch)
def _loss_cases(hidden: bool):
    import torch

    g = torch.Generator().manual_seed(65 if hidden else 64)
    yield ("one episode, two steps, constant baseline", torch.log(torch.tensor([[0.5, 0.25]])),
           torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[True, True]]))
    N, T = 4, 6
    mask = torch.arange(T)[None, :] < torch.tensor([[6], [3], [1], [5]])
    yield ("4 episodes of different lengths", -torch.rand(N, T, generator=g) * 2, torch.randn(N, T, generator=g) + 2,
           torch.randn(N, T, generator=g), mask)
    if hidden:
        yield ("8 full episodes, float64", -torch.rand(8, 5, generator=g, dtype=torch.float64) * 3,
               torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64),
               torch.ones(8, 5, dtype=torch.bool))


def check_reinforce_loss(reinforce_loss, hidden: bool = False) -> None:
    """Check ``reinforce_loss(logp, returns, baseline, mask)``: its value, its gradient, and that the baseline is detached."""
    import torch

    n = 0
    for case, logp0, returns, baseline0, mask in _loss_cases(hidden):
        N, T = logp0.shape
        # reference by loops: -(1/N) sum mask * logp * (G - b); d/d logp = -(1/N) mask * (G - b)
        value, grad = 0.0, torch.zeros_like(logp0)
        for i in range(N):
            for t in range(T):
                if mask[i, t]:
                    w = float(returns[i, t] - baseline0[i, t])
                    value -= float(logp0[i, t]) * w / N
                    grad[i, t] = -w / N
        logp = logp0.clone().requires_grad_(True)
        baseline = baseline0.clone().requires_grad_(True)  # as if it came out of a critic network
        loss = reinforce_loss(logp, returns.clone(), baseline, mask.clone())
        if loss is None:
            raise AssertionError(f"reinforce_loss returned None for case '{case}'. Did you forget `return`?")
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise AssertionError(f"reinforce_loss, case '{case}': expected a scalar tensor; got {type(loss).__name__}"
                                 + (f" of shape {tuple(loss.shape)}" if torch.is_tensor(loss) else ""))
        got_value = float(loss.detach())
        if abs(got_value - value) > 1e-5 * max(1.0, abs(value)):
            hint = ""
            alt = -sum(float(logp0[i, t]) * float(returns[i, t] + baseline0[i, t]) for i in range(N) for t in range(T) if mask[i, t]) / N
            if abs(got_value - alt) < 1e-5 * max(1.0, abs(alt)):
                hint = " Hint: that is what G + b gives; the baseline is subtracted."
            elif abs(got_value + value) < 1e-5 * max(1.0, abs(value)):
                hint = " Hint: the sign is flipped; the loss is minimised, so it is minus the objective."
            raise AssertionError(f"reinforce_loss, case '{case}': expected loss {value:.6g}, got {got_value:.6g}.{hint}")
        if not loss.requires_grad:
            raise AssertionError(f"reinforce_loss, case '{case}': the loss carries no gradient back to logp")
        loss.backward()
        if logp.grad is None:
            raise AssertionError(f"reinforce_loss, case '{case}': no gradient reached logp")
        assert_close(logp.grad, grad, "reinforce_loss: gradient with respect to logp", case, atol=1e-6)
        if baseline.grad is not None and float(baseline.grad.abs().max()) > 0:
            raise AssertionError(
                f"reinforce_loss, case '{case}': gradient flowed into the baseline. The weights G - b are "
                "constants for the policy: detach them, so the policy loss does not train the critic.")
        n += 1
    print(f"reinforce_loss: all {n} cases pass.")
