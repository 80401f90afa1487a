"""Tests for DPO: ``course_lib.losses.dpo_loss`` and the kernels and loop of ``course_lib.dpo``.

References are plain Python loops written from Rafailov et al. 2023, eq. 7, not from the
code under test.
"""

from __future__ import annotations

import doctest
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from course_lib import dpo, losses
from course_lib.dpo import completion_logprobs, completion_logps, implicit_rewards, kl_optimal_policy, pair_batch
from course_lib.gpt import GPT, GPTConfig
from course_lib.losses import dpo_loss
from course_lib.tokenizer import CharTokenizer


# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dpo_loss_loop(pc, pr, rc, rr, beta):
    total = 0.0
    for a, b, c, d in zip(*(np.ravel(x).tolist() for x in (pc, pr, rc, rr))):
        h = beta * ((a - c) - (b - d))
        # -log sigmoid(h), written two ways so neither overflows
        total += math.log1p(math.exp(-h)) if h >= 0 else -h + math.log1p(math.exp(h))
    return total / len(np.ravel(pc))


def _random_logps(rng, B, scale=5.0):
    return [-np.abs(rng.normal(size=B)) * scale for _ in range(4)]


# ---------------------------------------------------------------- dpo_loss
@pytest.mark.parametrize("B", [1, 2, 7, 64])
@pytest.mark.parametrize("beta", [0.01, 0.1, 0.5, 3.0])
def test_dpo_loss_matches_loop_numpy_and_torch(B, beta):
    rng = np.random.default_rng(B * 100 + int(beta * 100))
    args = _random_logps(rng, B)
    expected = dpo_loss_loop(*args, beta)
    assert dpo_loss(*args, beta) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    got = dpo_loss(*(torch.tensor(a) for a in args), beta)
    assert isinstance(got, torch.Tensor) and got.dim() == 0
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_dpo_loss_is_log2_when_policy_equals_reference():
    rng = np.random.default_rng(0)
    c, r = -np.abs(rng.normal(size=5)), -np.abs(rng.normal(size=5))
    assert dpo_loss(c, r, c, r, beta=0.3) == pytest.approx(math.log(2))


def test_dpo_loss_hand_example():
    # chosen up 0.5 nats, rejected down 0.5 nats, beta 0.5: h = 0.5, loss = log(1 + e^-0.5)
    assert dpo_loss(np.array([-2.0]), np.array([-3.0]), np.array([-2.5]), np.array([-2.5]), 0.5) == pytest.approx(
        math.log(1 + math.exp(-0.5)))


def test_dpo_loss_stable_for_large_margins():
    big = torch.tensor([-500.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0])
    got = dpo_loss(*big, beta=1.0)  # h = -500 in float32: log(sigmoid(h)) would be -inf
    assert torch.isfinite(got) and float(got) == pytest.approx(500.0, rel=1e-6)
    (p,) = [big[0].clone().requires_grad_()]
    dpo_loss(p, *big[1:], beta=1.0).backward()
    assert torch.isfinite(p.grad).all() and float(p.grad) == pytest.approx(-1.0, rel=1e-6)
    assert dpo_loss(np.array([0.0]), np.array([-800.0]), np.array([0.0]), np.array([0.0]), 1.0) == pytest.approx(0.0, abs=1e-12)


def test_dpo_loss_gradient_matches_formula():
    # d loss / d log pi(y_w) = -beta * sigmoid(-h) / B, and the opposite for y_l (Rafailov et al., sec. 4)
    rng = np.random.default_rng(3)
    pc, pr, rc, rr = (torch.tensor(a, requires_grad=(i < 2)) for i, a in enumerate(_random_logps(rng, 6)))
    beta = 0.7
    dpo_loss(pc, pr, rc, rr, beta).backward()
    for b in range(6):
        h = beta * ((pc[b] - rc[b]) - (pr[b] - rr[b])).item()
        weight = beta / (1 + math.exp(h)) / 6
        assert pc.grad[b].item() == pytest.approx(-weight, rel=1e-9)
        assert pr.grad[b].item() == pytest.approx(weight, rel=1e-9)


def test_dpo_loss_does_not_move_the_reference():
    rng = np.random.default_rng(4)
    pc, pr, rc, rr = (torch.tensor(a, requires_grad=True) for a in _random_logps(rng, 3))
    dpo_loss(pc, pr, rc, rr, 0.1).backward()
    assert rc.grad is None and rr.grad is None


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf")])
def test_dpo_loss_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2), beta)


def test_dpo_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="ref_rejected_logps"):
        dpo_loss(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(2), 0.1)
    with pytest.raises(ValueError, match=r"policy_chosen_logps must have shape \(B,\)"):
        dpo_loss(torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 5), torch.zeros(2, 5), 0.1)
    with pytest.raises(ValueError, match="at least one pair"):
        dpo_loss(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), 0.1)


def test_dpo_loss_in_all_and_doctest():
    assert "dpo_loss" in losses.__all__
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(losses.dpo_loss, globs={"np": np, "dpo_loss": dpo_loss}):
        runner.run(test)
    assert runner.failures == 0 and runner.tries >= 1


# ---------------------------------------------------------------- completion_logprobs, implicit_rewards
def completion_logprobs_loop(token_logps, mask):
    out = []
    for row, m in zip(np.asarray(token_logps).tolist(), np.asarray(mask).tolist()):
        out.append(sum(v for v, keep in zip(row, m) if keep))
    return np.array(out)


@pytest.mark.parametrize("shape", [(1, 1), (3, 8), (16, 5)])
def test_completion_logprobs_matches_loop(shape):
    rng = np.random.default_rng(shape[0])
    lp = -rng.exponential(size=shape)
    mask = rng.random(shape) < 0.6
    mask[0] = False  # a row with no completion token sums to 0
    expected = completion_logprobs_loop(lp, mask)
    np.testing.assert_allclose(completion_logprobs(lp, mask), expected, rtol=1e-12)
    got = completion_logprobs(torch.tensor(lp), torch.tensor(mask))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert got[0].item() == 0.0


def test_completion_logprobs_ignores_values_under_padding():
    lp = torch.tensor([[-9.0, -1.0, -2.0, -7.0]])
    assert completion_logprobs(lp, torch.tensor([[0, 1, 1, 0]])).tolist() == [-3.0]


def test_completion_logprobs_rejects_bad_shapes():
    with pytest.raises(ValueError, match="token_logps"):
        completion_logprobs(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="completion_mask"):
        completion_logprobs(torch.zeros(2, 3), torch.ones(2, 4))


def test_implicit_rewards():
    got = implicit_rewards(torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0]), 0.1)
    assert torch.allclose(got, torch.tensor([0.1, -0.1]))
    with pytest.raises(ValueError, match="beta"):
        implicit_rewards(np.zeros(2), np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="ref_logps"):
        implicit_rewards(np.zeros(2), np.zeros(3), 0.1)


# ---------------------------------------------------------------- pair_batch and completion_logps
def test_pair_batch_layout():
    tok = CharTokenizer()
    ids, att, comp = pair_batch(["ab", "c"], [" x.", " yzw."], tok)
    assert ids.shape == (2, 8)  # <bos> a b ␣ x . <eos> = 7 tokens; <bos> c ␣ y z w . <eos> = 8
    assert ids[0].tolist() == tok.encode("ab x.", bos=True, eos=True) + [tok.pad_id]
    assert ids[1].tolist() == tok.encode("c yzw.", bos=True, eos=True)
    assert att.tolist() == [[1] * 7 + [0], [1] * 8]
    assert comp.tolist() == [[0, 0, 0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1, 1, 1]]
    with pytest.raises(ValueError, match="same length"):
        pair_batch(["a"], ["b", "c"])


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=CharTokenizer().vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def test_completion_logps_is_the_chain_rule_over_the_completion():
    tok = CharTokenizer()
    model = _tiny_model()
    prompts, completions = ["the soup was", "ab"], [" good.", " bad and cold."]
    batch = pair_batch(prompts, completions, tok)
    with torch.no_grad():
        got = completion_logps(model, *batch)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        seq = tok.encode(p + c, bos=True, eos=True)
        start = len(tok.encode(p, bos=True))
        expected = 0.0
        with torch.no_grad():
            for t in range(start, len(seq)):
                logits = model(torch.tensor([seq[:t]]))[0, -1]
                expected += torch.log_softmax(logits.double(), -1)[seq[t]].item()
        assert got[b].item() == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------- train_dpo
@dataclass
class _Pairs:
    prompts: list
    chosen: list
    rejected: list


def test_train_dpo_raises_the_chosen_over_the_rejected():
    model = _tiny_model(1)
    reference = _tiny_model(1)
    pairs = _Pairs(["the soup was"] * 8, [" good."] * 8, [" bad."] * 8)
    before = completion_logps(model, *pair_batch(pairs.prompts[:1], pairs.chosen[:1])) - completion_logps(
        model, *pair_batch(pairs.prompts[:1], pairs.rejected[:1]))
    config = dpo.DPOConfig(beta=0.5, epochs=5, batch_size=4, lr=3e-3)
    history = dpo.train_dpo(model, reference, pairs, config, progress=False)
    assert len(history["loss"]) == 10 and len(history["seconds"]) == 10
    assert history["loss"][0] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at the start
    assert history["loss"][-1] < 0.5 and history["reward_accuracy"][-1] == 1.0
    with torch.no_grad():
        after = completion_logps(model, *pair_batch(pairs.prompts[:1], pairs.chosen[:1])) - completion_logps(
            model, *pair_batch(pairs.prompts[:1], pairs.rejected[:1]))
        # the reference did not move
        for p, q in zip(reference.parameters(), _tiny_model(1).parameters()):
            assert torch.equal(p, q)
    assert (after - before).item() > 1.0


def test_dpo_config_validates_and_fast_is_smaller():
    with pytest.raises(ValueError, match="beta"):
        dpo.DPOConfig(beta=0.0)
    with pytest.raises(ValueError, match="epochs"):
        dpo.DPOConfig(epochs=0)
    from course_lib.reward import reward_config

    # fast mode takes fewer steps: epochs over chapter 11's pairs, fewer of them in fast mode
    fast_steps = dpo.dpo_config(fast=True).epochs * reward_config(fast=True).n_pairs
    full_steps = dpo.dpo_config(fast=False).epochs * reward_config(fast=False).n_pairs
    assert fast_steps < full_steps


def test_train_dpo_rejects_empty_pairs():
    with pytest.raises(ValueError, match="pairs"):
        dpo.train_dpo(_tiny_model(), _tiny_model(), _Pairs([], [], []), dpo.DPOConfig(), progress=False)


# ---------------------------------------------------------------- kl_optimal_policy
def kl_optimal_loop(pi_ref, r, beta):
    w = [p * math.exp(x / beta) for p, x in zip(pi_ref, r)]
    return [v / sum(w) for v in w]


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_kl_optimal_policy_matches_loop_and_maximises_the_objective(beta):
    rng = np.random.default_rng(int(beta * 10))
    pi_ref = rng.dirichlet(np.ones(5), size=3)  # (3, 5): a batch of prompts
    r = rng.normal(size=(3, 5))
    got = kl_optimal_policy(pi_ref, r, beta)
    for b in range(3):
        np.testing.assert_allclose(got[b], kl_optimal_loop(pi_ref[b], r[b], beta), rtol=1e-10)
    np.testing.assert_allclose(kl_optimal_policy(torch.tensor(pi_ref), torch.tensor(r), beta).numpy(), got, rtol=1e-10)

    def objective(pi):
        return (pi * (r - beta * np.log(pi / pi_ref))).sum(-1)

    for _ in range(20):  # no random nearby distribution does better
        other = np.abs(got * np.exp(rng.normal(scale=0.1, size=got.shape)))
        other /= other.sum(-1, keepdims=True)
        assert (objective(other) <= objective(got) + 1e-12).all()


def test_kl_optimal_policy_edge_cases():
    np.testing.assert_allclose(kl_optimal_policy([0.5, 0.5], [0.0, math.log(3)], 1.0), [0.25, 0.75])
    got = kl_optimal_policy(np.array([0.5, 0.5, 0.0]), np.array([0.0, 2000.0, 5.0]), 0.01)  # no overflow
    np.testing.assert_allclose(got, [0.0, 1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="beta"):
        kl_optimal_policy([1.0], [0.0], 0.0)
    with pytest.raises(ValueError, match="pi_ref"):
        kl_optimal_policy([0.7, 0.7], [0.0, 0.0], 1.0)
    with pytest.raises(ValueError, match="rewards"):
        kl_optimal_policy([0.5, 0.5], [0.0], 1.0)


# ---------------------------------------------------------------- the beta slider (callback without a kernel)
def test_beta_slider_callback_redraws_the_optimum():
    import plotly.graph_objects as go

    from course_lib.widgets import beta_slider_kl_optimum, update_kl_optimum_bars

    pi_ref, r = np.array([0.5, 0.3, 0.2]), np.array([0.0, 1.0, 2.0])
    fig = go.Figure([go.Bar(y=pi_ref), go.Bar(y=pi_ref)])
    for beta in (0.1, 1.0, 5.0):
        pi = update_kl_optimum_bars(fig, pi_ref, r, beta)
        np.testing.assert_allclose(fig.data[1].y, kl_optimal_loop(pi_ref, r, beta), rtol=1e-10)
        assert f"beta = {beta:.2f}" in fig.layout.title.text
    # small beta: nearly all mass on the best completion; large beta: close to pi_ref
    assert update_kl_optimum_bars(fig, pi_ref, r, 0.05)[2] > 0.99
    assert np.abs(update_kl_optimum_bars(fig, pi_ref, r, 100.0) - pi_ref).max() < 0.02
    box = beta_slider_kl_optimum(pi_ref, r, ["a", "b", "c"], beta=1.0)
    box.slider.value = 0.5
    np.testing.assert_allclose(box.figure.data[1].y, kl_optimal_loop(pi_ref, r, 0.5), rtol=1e-10)
    with pytest.raises(ValueError, match="beta"):
        beta_slider_kl_optimum(pi_ref, r, ["a", "b", "c"], beta=0.0)
