"""Checks for exercise 7: TD errors, GAE, and the actor-critic loss.

References are plain per-step loops written from the definitions,
independent of ``course_lib.returns``. When a wrong answer matches a known
mistake (bootstrapping across an episode end, lambda and gamma swapped), the
message says so.
"""

from __future__ import annotations

import numpy as np

from . import assert_close

__all__ = ["check_td_errors", "check_gae", "check_actor_critic_loss"]


def _rows(rewards, values, dones):
    T = rewards.shape[-1]
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, T)
    v = np.asarray(values, dtype=np.float64).reshape(-1, T + 1)
    d = np.zeros_like(r, dtype=bool) if dones is None else np.asarray(dones, dtype=bool).reshape(-1, T)
    return r, v, d


def _td_loop(rewards, values, gamma, dones=None, cut_at_done=True):
    r, v, d = _rows(rewards, values, dones)
    out = np.zeros_like(r)
    for b in range(r.shape[0]):
        for t in range(r.shape[1]):
            next_value = 0.0 if (d[b, t] and cut_at_done) else v[b, t + 1]
            out[b, t] = r[b, t] + gamma * next_value - v[b, t]
    return out.reshape(np.shape(rewards))


def _gae_loop(rewards, values, gamma, lam, dones=None, cut_bootstrap=True, cut_recursion=True):
    """A_t = delta_t + gamma lam (1 - d_t) A_{t+1}; turning a flag off builds a known mistake."""
    r, v, d = _rows(rewards, values, dones)
    out = np.zeros_like(r)
    for b in range(r.shape[0]):
        a = 0.0
        for t in reversed(range(r.shape[1])):
            next_value = 0.0 if (d[b, t] and cut_bootstrap) else v[b, t + 1]
            delta = r[b, t] + gamma * next_value - v[b, t]
            carry = 0.0 if (d[b, t] and cut_recursion) else a
            a = delta + gamma * lam * carry
            out[b, t] = a
    return out.reshape(np.shape(rewards))


def _time_labels(idx) -> str:
    if len(idx) == 1:
        return f"step t = {idx[0]}"
    return f"row {idx[:-1] if len(idx) > 2 else idx[0]}, step t = {idx[-1]}"


def _td_gae_cases(hidden: bool):
    """(case, rewards, values, gamma, lam, dones)."""
    rng = np.random.default_rng(71 if hidden else 70)
    yield ("the notes' worked example (gamma 1, values 0)", np.array([1.2, 0.3, 0.8, -0.2]), np.zeros(5), 1.0, 0.5, None)
    yield ("one episode, gamma 0.9, lambda 0.8, nonzero values", np.array([1.0, 0.0, 2.0]),
           np.array([0.5, 1.5, -1.0, 3.0]), 0.9, 0.8, None)
    yield ("an episode ends after step 1 (no bootstrapping across it)", np.array([1.0, 2.0, 3.0, 4.0]),
           np.array([0.5, 0.25, 10.0, -7.0, 3.0]), 0.9, 0.8, np.array([False, True, False, False]))
    yield ("batch of 3 rows with episode ends, gamma 0.99, lambda 0.95", rng.normal(size=(3, 9)), rng.normal(size=(3, 10)),
           0.99, 0.95, rng.random((3, 9)) < 0.25)
    if hidden:
        yield "T = 1", np.array([[2.0], [-1.0]]), np.array([[0.5, 4.0], [1.0, 2.0]]), 0.9, 0.7, np.array([[False], [True]])
        yield "every step ends an episode", rng.normal(size=(2, 5)), rng.normal(size=(2, 6)), 0.9, 0.9, np.ones((2, 5), bool)
        yield "lambda 0: the TD errors", rng.normal(size=(2, 6)), rng.normal(size=(2, 7)), 0.95, 0.0, rng.random((2, 6)) < 0.3
        yield "lambda 1: bootstrapped returns minus values", rng.normal(size=(2, 6)), rng.normal(size=(2, 7)), 0.9, 1.0, None
        yield "two batch axes", rng.normal(size=(2, 2, 7)), rng.normal(size=(2, 2, 8)), 0.8, 0.6, rng.random((2, 2, 7)) < 0.2


def _call(fn, *args, dones=None):
    args = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args)
    return fn(*args) if dones is None else fn(*args, np.array(dones, copy=True))


def check_td_errors(td_errors, hidden: bool = False) -> None:
    """Check ``td_errors(rewards, values, gamma, dones=None)`` against a per-step loop."""
    n = 0
    for case, rewards, values, gamma, _, dones in _td_gae_cases(hidden):
        expected = _td_loop(rewards, values, gamma, dones)
        got = _call(td_errors, rewards, values, gamma, dones=dones)
        try:
            assert_close(got, expected, "td_errors", case, labels=_time_labels)
        except AssertionError as err:
            if dones is not None and isinstance(got, np.ndarray) and got.shape == expected.shape and np.allclose(
                got, _td_loop(rewards, values, gamma, dones, cut_at_done=False)
            ):
                raise AssertionError(f"{err}\nHint: after a done, V(s_t+1) belongs to the next episode: leave it out.") from None
            raise
        n += 1
    print(f"td_errors: all {n} cases pass.")


def check_gae(gae, hidden: bool = False) -> None:
    """Check ``gae(rewards, values, gamma, lam, dones=None)`` against the per-step loop of its recursion."""
    n = 0
    for case, rewards, values, gamma, lam, dones in _td_gae_cases(hidden):
        expected = _gae_loop(rewards, values, gamma, lam, dones)
        got = _call(gae, rewards, values, gamma, lam, dones=dones)
        try:
            assert_close(got, expected, "gae", case, labels=_time_labels)
        except AssertionError as err:
            if isinstance(got, np.ndarray) and got.shape == expected.shape:
                # (Swapping lambda and gamma leaves the product gamma * lambda alone; it shows in the TD error.)
                mistakes = [
                    ("lambda and gamma look swapped: the TD error discounts with gamma, the recursion with gamma * lambda.",
                     _gae_loop(rewards, values, lam, gamma, dones)),
                ]
                if dones is not None:
                    mistakes += [
                        ("the advantage runs on across an episode end: stop the recursion where dones is True.",
                         _gae_loop(rewards, values, gamma, lam, dones, cut_recursion=False)),
                        ("the TD error at an episode end bootstraps from the next episode's value: leave V(s_t+1) out there.",
                         _gae_loop(rewards, values, gamma, lam, dones, cut_bootstrap=False)),
                        ("dones seem to be ignored: nothing may be carried across an episode end.",
                         _gae_loop(rewards, values, gamma, lam, None)),
                    ]
                for hint, wrong in mistakes:
                    if np.allclose(got, wrong, atol=1e-6):
                        raise AssertionError(f"{err}\nHint: {hint}") from None
            raise
        n += 1
    print(f"gae: all {n} cases pass.")


# ---------------------------------------------------------------- the actor-critic loss (torch)
def _loss_cases(hidden: bool):
    import torch

    g = torch.Generator().manual_seed(73 if hidden else 72)
    yield ("two steps, all valid", torch.log(torch.tensor([[0.5, 0.25]])), torch.tensor([[2.0, 1.0, 0.5]]),
           torch.tensor([[1.0, -1.0]]), torch.tensor([[True, True]]), 0.5)
    mask = torch.tensor([[True] * 6, [True, True, False, True, True, True], [True] * 3 + [False] * 3])
    yield ("3 rows with an autoreset step and padding (mask)", -torch.rand(3, 6, generator=g) * 2,
           torch.randn(3, 7, generator=g), torch.randn(3, 6, generator=g), mask, 0.5)
    if hidden:
        yield ("float64, value_coef 1", -torch.rand(4, 5, generator=g, dtype=torch.float64),
               torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64),
               torch.ones(4, 5, dtype=torch.bool), 1.0)


def check_actor_critic_loss(actor_critic_loss, hidden: bool = False) -> None:
    """Check ``actor_critic_loss(logp, values, advantages, returns, mask, value_coef)``: value, gradients, detaching.

    The advantages and the returns are built from the critic's values (as in a real update), so
    that forgetting to detach them shows up as a wrong gradient on the values.
    """
    import torch

    n = 0
    for case, logp0, values_all0, rewards, mask, value_coef in _loss_cases(hidden):
        N, T = logp0.shape
        # advantages and targets from the critic: one-step TD, as a stand-in for GAE
        adv0 = rewards + 0.9 * values_all0[:, 1:] - values_all0[:, :-1]
        ret0 = adv0 + values_all0[:, :-1]
        count = int(mask.sum())
        value, g_logp, g_values = 0.0, torch.zeros_like(logp0), torch.zeros_like(values_all0)
        for i in range(N):
            for t in range(T):
                if mask[i, t]:
                    a, v, target = float(adv0[i, t]), float(values_all0[i, t]), float(ret0[i, t])
                    value += (-float(logp0[i, t]) * a + value_coef * (v - target) ** 2) / count
                    g_logp[i, t] = -a / count
                    g_values[i, t] = value_coef * 2.0 * (v - target) / count
        logp = logp0.clone().requires_grad_(True)
        values_all = values_all0.clone().requires_grad_(True)
        values = values_all[:, :-1]
        advantages = rewards + 0.9 * values_all[:, 1:] - values          # still attached to the critic
        returns = advantages + values
        loss = actor_critic_loss(logp, values, advantages, returns, mask.clone(), value_coef)
        if loss is None:
            raise AssertionError(f"actor_critic_loss returned None for case '{case}'. Did you forget `return`?")
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise AssertionError(f"actor_critic_loss, case '{case}': expected a scalar tensor; got {type(loss).__name__}")
        got = float(loss.detach())
        if abs(got - value) > 1e-5 * max(1.0, abs(value)):
            raise AssertionError(f"actor_critic_loss, case '{case}': expected loss {value:.6g}, got {got:.6g} "
                                 f"(means over the {count} steps where mask is True)")
        loss.backward()
        if logp.grad is None:
            raise AssertionError(f"actor_critic_loss, case '{case}': no gradient reached logp")
        assert_close(logp.grad, g_logp, "actor_critic_loss: gradient with respect to logp", case, atol=1e-6)
        if values_all.grad is None:
            raise AssertionError(f"actor_critic_loss, case '{case}': no gradient reached the critic's values")
        try:
            assert_close(values_all.grad, g_values, "actor_critic_loss: gradient with respect to the critic's values", case,
                         atol=1e-6)
        except AssertionError as err:
            raise AssertionError(
                f"{err}\nHint: the advantages and the returns are targets: detach them, so that only the "
                "squared error (V - G)^2 trains the critic.") from None
        n += 1
    print(f"actor_critic_loss: all {n} cases pass.")
