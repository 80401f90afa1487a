"""The exercise-11 checks accept the library's kernels and reject plausible mistakes, saying which."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib import reward
from course_lib.checks import ch11 as checks


# ---------------------------------------------------------------- bradley_terry_mle mutants
def _zermelo(wins, iters=10_000, normalise=True, transpose=False, games_one_way=False):
    w = np.asarray(wins, dtype=float)
    if transpose:
        w = w.T
    games = w if games_one_way else w + w.T
    won = w.sum(axis=1)
    p = np.ones(len(w))
    for _ in range(iters):
        denom = np.divide(games, p[:, None] + p[None, :], out=np.zeros_like(games), where=games > 0).sum(axis=1)
        p = won / denom
        if normalise:
            p = p / p.sum()
    return p


def _not_normalised(wins):
    p = _zermelo(wins, normalise=False)
    return p / p.max()  # scaled so the strongest is 1, a common alternative convention


def _transposed(wins):
    return _zermelo(wins, transpose=True)


def _too_few_iterations(wins):
    return _zermelo(wins, iters=3)


def _games_counted_one_way(wins):
    # n_ij taken as wins[i, j] only, forgetting the games i lost to j.
    return _zermelo(wins, games_one_way=True)


def _win_rates(wins):
    # Each player's overall win rate, normalised: right for two players, wrong in general.
    w = np.asarray(wins, dtype=float)
    rate = w.sum(axis=1) / (w + w.T).sum(axis=1)
    return rate / rate.sum()


def _as_list(wins):
    return list(reward.bradley_terry_mle(wins))


@pytest.mark.parametrize("mutant, hint", [
    (_not_normalised, "sum"),
    (_transposed, "transposed"),
    (_too_few_iterations, None),
    (_games_counted_one_way, None),
    (_win_rates, None),
])
@pytest.mark.parametrize("hidden", [False, True])
def test_mle_check_rejects(mutant, hint, hidden):
    with pytest.raises(AssertionError) as err:
        checks.check_bradley_terry_mle(mutant, hidden=hidden)
    if hint:
        assert hint in str(err.value)
    assert "case" in str(err.value)


def test_mle_check_rejects_stub():
    def stub(wins):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        checks.check_bradley_terry_mle(stub)


@pytest.mark.parametrize("hidden", [False, True])
def test_mle_check_accepts_the_library(hidden, capsys):
    checks.check_bradley_terry_mle(reward.bradley_terry_mle, hidden=hidden)
    assert "pass" in capsys.readouterr().out


def test_mle_check_accepts_a_list_result():
    checks.check_bradley_terry_mle(_as_list)


def test_mle_check_table_is_the_chapter_table():
    w = checks.SEED_TABLE
    assert (w[0, 1], w[1, 0], w[0, 2], w[2, 0], w[1, 2], w[2, 1]) == (8, 4, 3, 5, 2, 3)


# ---------------------------------------------------------------- bradley_terry_loss mutants
def _lib_loss(a, b):
    return reward.bradley_terry_loss(a, b)


def _swapped(a, b):
    return reward.bradley_terry_loss(b, a)


def _summed(a, b):
    return reward.bradley_terry_loss(a, b) * (a.numel() if isinstance(a, torch.Tensor) else np.size(a))


def _naive_log_sigmoid(a, b):
    if isinstance(a, torch.Tensor):
        return -torch.log(torch.sigmoid(a - b)).mean()
    with np.errstate(over="ignore", divide="ignore"):
        return -np.log(1.0 / (1.0 + np.exp(-(a - b)))).mean()


def _missing_minus(a, b):
    return -reward.bradley_terry_loss(a, b)


def _through_numpy(a, b):
    # Converts torch input to numpy: right numbers, no gradient, wrong type.
    if isinstance(a, torch.Tensor):
        return torch.tensor(float(reward.bradley_terry_loss(a.detach().numpy(), b.detach().numpy())))
    return reward.bradley_terry_loss(a, b)


def _returns_float_for_torch(a, b):
    if isinstance(a, torch.Tensor):
        return float(reward.bradley_terry_loss(a, b).detach())
    return reward.bradley_terry_loss(a, b)


def _per_pair(a, b):
    # Forgot the mean: one loss per pair.
    if isinstance(a, torch.Tensor):
        return F.softplus(b - a)
    return np.logaddexp(0.0, b - a)


def _sigmoid_not_log(a, b):
    if isinstance(a, torch.Tensor):
        return (1 - torch.sigmoid(a - b)).mean()
    return (1 - 1 / (1 + np.exp(-(a - b)))).mean()


@pytest.mark.parametrize("mutant, hint", [
    (_swapped, "swapped"),
    (_summed, "sum"),
    (_naive_log_sigmoid, "finite"),
    (_missing_minus, "sign"),
    (_through_numpy, "gradient"),
    (_returns_float_for_torch, "torch tensor"),
    (_per_pair, "one number"),
    (_sigmoid_not_log, None),
])
@pytest.mark.parametrize("hidden", [False, True])
def test_loss_check_rejects(mutant, hint, hidden):
    with pytest.raises(AssertionError) as err:
        with np.errstate(all="ignore"):
            checks.check_bradley_terry_loss(mutant, hidden=hidden)
    if hint:
        assert hint in str(err.value)


@pytest.mark.parametrize("hidden", [False, True])
def test_loss_check_accepts_the_library(hidden, capsys):
    checks.check_bradley_terry_loss(_lib_loss, hidden=hidden)
    assert "pass" in capsys.readouterr().out


def test_loss_check_accepts_logsigmoid_in_torch_and_logaddexp_in_numpy():
    def other(a, b):
        if isinstance(a, torch.Tensor):
            return -F.logsigmoid(a - b).mean()
        return np.mean(np.logaddexp(0, b - a))

    checks.check_bradley_terry_loss(other, hidden=True)
