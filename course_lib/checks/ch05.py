"""Checks for exercise 5: epsilon schedule, DQN targets, the semi-gradient loss, the target-network refresh.

References are plain loops written here, independent of ``course_lib.dqn``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from . import assert_close

__all__ = ["check_linear_epsilon", "check_dqn_targets", "check_dqn_loss", "check_maybe_sync_target"]


# ---------------------------------------------------------------- schedule
def check_linear_epsilon(linear_epsilon, hidden: bool = False) -> None:
    """Check ``linear_epsilon(step, start, end, duration)`` on single integer steps."""
    cases = [
        ("step 0 gives start", 0, 1.0, 0.05, 100),
        ("half way", 50, 1.0, 0.0, 100),
        ("a quarter of the way, from 0.5 to 0.1", 25, 0.5, 0.1, 100),
        ("at the end of the fall", 100, 1.0, 0.05, 100),
        ("long after: held at end", 5000, 1.0, 0.05, 100),
    ]
    if hidden:
        cases += [
            ("duration 1", 1, 0.9, 0.2, 1),
            ("rising schedule", 30, 0.0, 0.6, 60),
            ("one step before the end", 99, 1.0, 0.0, 100),
        ]
    for case, step, start, end, duration in cases:
        expected = end if step >= duration else start + (end - start) * step / duration
        got = linear_epsilon(step, start, end, duration)
        if got is None:
            raise AssertionError(f"linear_epsilon returned None for case '{case}'. Did you forget `return`?")
        if not np.isclose(float(got), expected, atol=1e-9):
            raise AssertionError(
                f"linear_epsilon, case '{case}' (step={step}, start={start}, end={end}, duration={duration}): "
                f"expected {expected:.6g}, got {float(got):.6g}"
            )
    print(f"linear_epsilon: all {len(cases)} cases pass.")


# ---------------------------------------------------------------- targets
def _targets_loop(rewards, next_q, terminated, gamma):
    y = torch.zeros_like(rewards)
    for i in range(len(rewards)):
        bootstrap = 0.0 if bool(terminated[i]) else gamma * float(max(next_q[i]))
        y[i] = float(rewards[i]) + bootstrap
    return y


def check_dqn_targets(dqn_targets, hidden: bool = False) -> None:
    """Check ``dqn_targets(rewards, next_q_target, terminated, gamma)`` (torch tensors) against a loop."""
    gen = torch.Generator().manual_seed(71 if hidden else 70)
    next_q = torch.tensor([[1.0, 3.0], [4.0, -2.0], [0.5, 0.5], [2.0, 6.0]])
    cases = [
        ("four transitions, none terminal", torch.ones(4), next_q, torch.zeros(4, dtype=torch.bool), 0.9),
        ("the second transition terminates the episode", torch.ones(4), next_q, torch.tensor([False, True, False, False]), 0.99),
        ("32 random transitions, three actions", torch.randn(32, generator=gen), torch.randn(32, 3, generator=gen),
         torch.rand(32, generator=gen) < 0.3, 0.95),
    ]
    if hidden:
        cases += [
            ("all terminal", torch.randn(6, generator=gen), torch.randn(6, 2, generator=gen), torch.ones(6, dtype=torch.bool), 0.9),
            ("gamma 0", torch.randn(5, generator=gen), torch.randn(5, 4, generator=gen), torch.zeros(5, dtype=torch.bool), 0.0),
            ("one transition", torch.tensor([2.0]), torch.tensor([[-1.0, -3.0]]), torch.tensor([False]), 0.5),
        ]
    for case, r, q, d, gamma in cases:
        expected = _targets_loop(r, q, d, gamma)
        got = dqn_targets(r.clone(), q.clone(), d.clone(), gamma)
        try:
            assert_close(got, expected, "dqn_targets", case, labels=lambda idx: f"transition {idx[0]}")
        except AssertionError as err:
            hint = ""
            if isinstance(got, torch.Tensor) and got.shape == expected.shape and d.any():
                if torch.allclose(got.detach().float(), _targets_loop(r, q, torch.zeros_like(d), gamma)):
                    hint = " It looks like the terminal transitions still bootstrap: multiply the max by (1 - terminated)."
            raise AssertionError(str(err) + hint) from None
    print(f"dqn_targets: all {len(cases)} cases pass.")


# ---------------------------------------------------------------- loss
def check_dqn_loss(dqn_loss, hidden: bool = False) -> None:
    """Check ``dqn_loss(q_values, actions, targets)``: value, gradient, and no gradient into the targets."""
    gen = torch.Generator().manual_seed(81 if hidden else 80)
    sizes = [(1, 2), (8, 2), (16, 4)] + ([(64, 3), (5, 1)] if hidden else [])
    for B, A in sizes:
        case = f"batch of {B}, {A} actions"
        q = torch.randn(B, A, generator=gen, dtype=torch.float64).requires_grad_()
        actions = torch.randint(0, A, (B,), generator=gen)
        targets = torch.randn(B, generator=gen, dtype=torch.float64).requires_grad_()
        loss = dqn_loss(q, actions, targets)
        if loss is None:
            raise AssertionError(f"dqn_loss returned None for case '{case}'. Did you forget `return`?")
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise AssertionError(f"dqn_loss, case '{case}': expected a scalar tensor; got {type(loss).__name__} "
                                 f"of shape {tuple(getattr(loss, 'shape', ()))}")
        errors = [float(q[i, actions[i]].detach() - targets[i].detach()) for i in range(B)]
        expected = sum(0.5 * e * e for e in errors) / B
        if not np.isclose(loss.item(), expected, rtol=1e-6, atol=1e-9):
            raise AssertionError(
                f"dqn_loss, case '{case}': expected 0.5 * mean((Q(s, a) - y)^2) = {expected:.6g}, got {loss.item():.6g}. "
                "Use the Q-value of the action taken (gather), not of every action or of the best one."
            )
        loss.backward()
        if targets.grad is not None and targets.grad.abs().max() > 0:
            raise AssertionError(
                f"dqn_loss, case '{case}': the gradient reaches the targets. The TD target is held fixed "
                "(semi-gradient): detach it with targets.detach()."
            )
        expected_grad = torch.zeros(B, A, dtype=torch.float64)
        for i in range(B):
            expected_grad[i, actions[i]] = errors[i] / B
        if q.grad is None:
            raise AssertionError(f"dqn_loss, case '{case}': no gradient reaches q_values; do not detach the predictions.")
        assert_close(q.grad, expected_grad, "gradient of dqn_loss with respect to q_values", case,
                     labels=lambda idx: f"transition {idx[0]}, action {idx[1]}")
    print(f"dqn_loss: all {len(sizes)} cases pass.")


# ---------------------------------------------------------------- target network
def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def check_maybe_sync_target(maybe_sync_target, hidden: bool = False) -> None:
    """Check ``maybe_sync_target(n_updates, target_net, online_net, every)``.

    Simulates training: after each update the online weights change; after the
    call, the target must hold the online weights of the last update whose count
    is a multiple of ``every``, as its own copy.
    """
    everies = [3, 1] + ([5, 2] if hidden else [])
    for every in everies:
        online, target = _net(0), _net(1)
        initial_target = _params(target)
        last_synced = initial_target
        for n_updates in range(1, 4 * every + 2):
            with torch.no_grad():  # a gradient step of the online network
                for p in online.parameters():
                    p.add_(0.01 * torch.randn_like(p))
            result = maybe_sync_target(n_updates, target, online, every)
            should_sync = n_updates % every == 0
            if should_sync:
                last_synced = _params(online)
            case = f"every = {every}, after update {n_updates}"
            if any(pt.data_ptr() == po.data_ptr() for pt, po in zip(target.parameters(), online.parameters())):
                raise AssertionError(
                    f"maybe_sync_target, case '{case}': the target network shares its weight tensors with the online "
                    "network, so it moves with every update. Copy the weights "
                    "(target_net.load_state_dict(online_net.state_dict())), do not share tensors."
                )
            if not _same(_params(target), last_synced):
                if _same(_params(target), initial_target):
                    why = "the target network still has its initial weights: it is never updated"
                elif _same(_params(target), _params(online)):
                    why = f"the target network equals the online network, but it should only be refreshed every {every} updates"
                else:
                    why = "the target network holds weights from the wrong update"
                raise AssertionError(f"maybe_sync_target, case '{case}': {why}.")
            if result is not None and bool(result) != should_sync:
                raise AssertionError(f"maybe_sync_target, case '{case}': returned {result!r}; expected {should_sync}")
        # The copy must be a copy: moving the online weights must not move the target.
        with torch.no_grad():
            for p in online.parameters():
                p.add_(1.0)
        if not _same(_params(target), last_synced):
            raise AssertionError(
                f"maybe_sync_target, every = {every}: changing the online network changed the target network too. "
                "Copy the weights (target_net.load_state_dict(online_net.state_dict())), do not share tensors."
            )
    print(f"maybe_sync_target: all {len(everies)} cases pass.")
