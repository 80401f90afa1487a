"""Tests for course_lib.grpo: group advantages, the three loss aggregations, the GRPO loss,
sampling groups, and a short training run that must raise the reward.

References are plain Python loops written from the formulas (DeepSeekMath eq. 3 and
the group-standardised advantage; DAPO's token mean; Dr. GRPO's constant normaliser).
"""

from __future__ import annotations

import doctest
import functools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import grpo
from course_lib.gpt import GPT, GPTConfig, sequence_logprobs
from course_lib.grpo import (
    GRPOConfig,
    all_equal_groups,
    completion_logprobs,
    dr_grpo_sum,
    frozen_copy,
    group_advantages,
    grpo_loss,
    grpo_step,
    group_logprobs,
    sample_groups,
    sequence_mean,
    token_mean,
    train_grpo,
)
from course_lib.tokenizer import CharTokenizer

ROOT = Path(__file__).resolve().parents[1]


# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_doctests():
    assert doctest.testmod(grpo, raise_on_error=False).failed == 0


# ---------------------------------------------------------------- plain-loop references
def advantages_loop(rewards, G, scale=True, eps=1e-4):
    rewards = [float(r) for r in rewards]
    out = []
    for g in range(len(rewards) // G):
        group = rewards[g * G : (g + 1) * G]
        mean = sum(group) / G
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / G)
        out += [(r - mean) / (std + eps) if scale else r - mean for r in group]
    return np.array(out)


def sequence_mean_loop(x, m):
    per_seq = []
    for row, mrow in zip(x.tolist(), m.tolist()):
        n = sum(mrow)
        if n:
            per_seq.append(sum(v for v, k in zip(row, mrow) if k) / n)
    return sum(per_seq) / len(per_seq)


def token_mean_loop(x, m):
    total, n = 0.0, 0
    for row, mrow in zip(x.tolist(), m.tolist()):
        for v, k in zip(row, mrow):
            if k:
                total, n = total + v, n + 1
    return total / n


def dr_sum_loop(x, m, max_len):
    total = sum(v for row, mrow in zip(x.tolist(), m.tolist()) for v, k in zip(row, mrow) if k)
    return total / (len(x) * max_len)


def grpo_per_token_loop(logp, old, ref, adv, eps, beta):
    B, T = len(logp), len(logp[0])
    out = np.zeros((B, T))
    for i in range(B):
        for t in range(T):
            r = math.exp(logp[i][t] - old[i][t])
            surrogate = min(r * adv[i], min(max(r, 1 - eps), 1 + eps) * adv[i])
            q = math.exp(ref[i][t] - logp[i][t])  # pi_ref / pi
            out[i, t] = -(surrogate - beta * (q - math.log(q) - 1))
    return out


def random_mask(rng, B, T, allow_empty=False):
    lengths = rng.integers(0 if allow_empty else 1, T + 1, size=B)
    return (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)


# ---------------------------------------------------------------- group_advantages
@pytest.mark.parametrize("G", [1, 2, 4, 8])
@pytest.mark.parametrize("scale", [True, False])
def test_group_advantages_matches_loop(G, scale):
    rng = np.random.default_rng(G + 10 * scale)
    rewards = rng.normal(size=5 * G)
    expected = advantages_loop(rewards, G, scale)
    np.testing.assert_allclose(group_advantages(rewards, G, scale=scale), expected, atol=1e-12)
    got_t = group_advantages(torch.tensor(rewards), G, scale=scale)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), expected, atol=1e-12)


def test_group_advantages_binary_rewards_and_all_equal_groups():
    rewards = np.array([1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=float)  # G = 4: p = 1/4, all right, all wrong
    adv = group_advantages(rewards, 4)
    assert np.all(np.isfinite(adv))
    np.testing.assert_allclose(adv[4:], 0.0)  # all-equal groups: no signal, and no NaN
    std = math.sqrt(0.25 * 0.75)
    np.testing.assert_allclose(adv[:4], [(1 - 0.25) / (std + 1e-4)] + [-0.25 / (std + 1e-4)] * 3)


def test_group_advantages_is_per_group_not_per_batch():
    # Standardising the whole batch would give the all-right group positive advantages.
    rewards = np.array([1.0, 1.0, 0.0, 1.0])
    adv = group_advantages(rewards, 2)
    np.testing.assert_allclose(adv[:2], 0.0)
    assert adv[3] > 0 > adv[2]


def test_group_advantages_leading_axes():
    rng = np.random.default_rng(3)
    rewards = rng.integers(0, 2, size=(3, 12)).astype(float)
    got = group_advantages(rewards, 4)
    for b in range(3):
        np.testing.assert_allclose(got[b], advantages_loop(rewards[b], 4), atol=1e-12)


def test_group_advantages_bad_input():
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(np.zeros(7), 2)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(np.zeros(4), 0)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(np.zeros(4), 2.0)
    with pytest.raises(ValueError, match="eps"):
        group_advantages(np.zeros(4), 2, eps=0.0)


def test_all_equal_groups_matches_loop():
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, size=40).astype(float)
    expected = [len(set(rewards[g * 4 : g * 4 + 4].tolist())) == 1 for g in range(10)]
    np.testing.assert_array_equal(all_equal_groups(rewards, 4), expected)
    np.testing.assert_array_equal(all_equal_groups(torch.tensor(rewards), 4).numpy(), expected)
    with pytest.raises(ValueError, match="rewards"):
        all_equal_groups(rewards, 3)


# ---------------------------------------------------------------- aggregations
@pytest.mark.parametrize("B,T", [(1, 1), (1, 6), (5, 1), (6, 7)])
def test_aggregations_match_loops(B, T):
    rng = np.random.default_rng(B * 100 + T)
    x = rng.normal(size=(B, T))
    m = random_mask(rng, B, T)
    x_masked_garbage = np.where(m, x, 1e6)  # padding must never leak in
    for data in (x, x_masked_garbage):
        assert sequence_mean(data, m) == pytest.approx(sequence_mean_loop(data, m), abs=1e-9)
        assert token_mean(data, m) == pytest.approx(token_mean_loop(data, m), abs=1e-9)
        assert dr_grpo_sum(data, m, max_len=T + 3) == pytest.approx(dr_sum_loop(data, m, T + 3), abs=1e-9)
        t, tm = torch.tensor(data), torch.tensor(m)
        assert float(sequence_mean(t, tm)) == pytest.approx(sequence_mean_loop(data, m), abs=1e-9)
        assert float(token_mean(t, tm)) == pytest.approx(token_mean_loop(data, m), abs=1e-9)
        assert float(dr_grpo_sum(t, tm, max_len=T)) == pytest.approx(dr_sum_loop(data, m, T), abs=1e-9)


def test_aggregations_differ_on_unequal_lengths():
    # One long and one short sequence: the three weightings give three different numbers.
    x = np.array([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    m = np.array([[1, 1, 1, 1], [1, 0, 0, 0]])
    assert sequence_mean(x, m) == pytest.approx(2.0)
    assert token_mean(x, m) == pytest.approx(7 / 5)
    assert dr_grpo_sum(x, m, 4) == pytest.approx(7 / 8)


def test_sequence_mean_skips_empty_rows_and_rejects_empty_masks():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5))
    m = random_mask(rng, 4, 5)
    m[2] = 0
    assert sequence_mean(x, m) == pytest.approx(sequence_mean_loop(x, m))
    with pytest.raises(ValueError, match="mask"):
        sequence_mean(x, np.zeros_like(m))
    with pytest.raises(ValueError, match="mask"):
        token_mean(x, np.zeros_like(m))
    with pytest.raises(ValueError, match="mask"):
        sequence_mean(x, m[:, :3])
    with pytest.raises(ValueError, match="max_len"):
        dr_grpo_sum(x, m, max_len=4)


# ---------------------------------------------------------------- grpo_loss
def _loss_inputs(seed, B=6, T=5):
    rng = np.random.default_rng(seed)
    old = np.log(rng.uniform(0.05, 0.95, size=(B, T)))
    logp = old + rng.normal(scale=0.3, size=(B, T))  # ratios spread on both sides of the clip range
    ref = old + rng.normal(scale=0.2, size=(B, T))
    adv = rng.normal(size=B)
    mask = random_mask(rng, B, T)
    return logp, old, ref, adv, mask


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("beta", [0.0, 0.04, 0.5])
def test_grpo_loss_matches_loop(seed, beta):
    logp, old, ref, adv, mask = _loss_inputs(seed)
    per_token = grpo_per_token_loop(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), 0.2, beta)
    t = lambda a: torch.tensor(a)  # noqa: E731
    for aggregate, reference in ((sequence_mean, sequence_mean_loop), (token_mean, token_mean_loop),
                                 (functools.partial(dr_grpo_sum, max_len=8), lambda x, m: dr_sum_loop(x, m, 8))):
        loss, stats = grpo_loss(t(logp), t(old), t(ref), t(adv), t(mask), eps=0.2, beta=beta, aggregate=aggregate)
        assert float(loss) == pytest.approx(reference(per_token, mask), abs=1e-9)
    # stats: k3 token mean and the share of tokens where the clip is active
    k3, clipped, n = 0.0, 0, 0
    for i in range(len(logp)):
        for j in range(logp.shape[1]):
            if mask[i, j]:
                q = math.exp(ref[i, j] - logp[i, j])
                k3 += q - math.log(q) - 1
                r = math.exp(logp[i, j] - old[i, j])
                clipped += (adv[i] > 0 and r > 1.2) or (adv[i] < 0 and r < 0.8)
                n += 1
    assert stats["kl"] == pytest.approx(k3 / n, abs=1e-9)
    assert stats["clip_fraction"] == pytest.approx(clipped / n)
    assert 0 < stats["clip_fraction"] < 1


def test_grpo_loss_gradient_at_ratio_one_is_the_policy_gradient():
    # With logp = old_logp and beta = 0 the gradient is that of -mean_i (1/|o_i|) sum_t A_i logp_{i,t}.
    logp0, _, ref, adv, mask = _loss_inputs(4)
    a = torch.tensor(logp0, requires_grad=True)
    loss, _ = grpo_loss(a, a.detach(), torch.tensor(ref), torch.tensor(adv), torch.tensor(mask), beta=0.0)
    loss.backward()
    lengths = mask.sum(1, keepdims=True)
    expected = -adv[:, None] * mask / lengths / len(adv)
    np.testing.assert_allclose(a.grad.numpy(), expected, atol=1e-12)


def test_grpo_loss_per_token_advantages_and_bad_input():
    logp, old, ref, adv, mask = (torch.tensor(x) for x in _loss_inputs(5))
    loss_b, _ = grpo_loss(logp, old, ref, adv, mask)
    loss_bt, _ = grpo_loss(logp, old, ref, adv[:, None].expand_as(logp), mask)
    assert float(loss_b) == pytest.approx(float(loss_bt))
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, old, None, adv, mask, beta=0.1)
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logp, old, ref, adv[:3], mask)
    with pytest.raises(ValueError, match="old_logp"):
        grpo_loss(logp, old[:, :2], ref, adv, mask)
    with pytest.raises(ValueError, match="beta"):
        grpo_loss(logp, old, ref, adv, mask, beta=-1.0)
    with pytest.raises(ValueError, match="eps"):
        grpo_loss(logp, old, ref, adv, mask, eps=0.0)
    loss0, stats = grpo_loss(logp, old, None, adv, mask, beta=0.0)  # no reference needed without the KL term
    assert math.isnan(stats["kl"]) and math.isfinite(float(loss0))


# ---------------------------------------------------------------- sampling and training on a toy task
def tiny_policy(seed=0):
    torch.manual_seed(seed)
    tok = CharTokenizer()
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)).eval()


def first_char_reward(prompts, completions):
    """1 when the completion starts with '7': a task a tiny random policy can learn in a few steps."""
    return torch.tensor([float(c[:1] == "7") for c in completions])


def test_sample_groups_layout_and_logprobs():
    policy = tiny_policy()
    reference = frozen_copy(policy)
    config = GRPOConfig(group_size=3, max_new_tokens=4, epochs=2, beta=0.1)
    batch = sample_groups(policy, reference, first_char_reward, ["1+2=", "33+4="], config, CharTokenizer(),
                          torch.Generator().manual_seed(0))
    assert batch.prompts == ["1+2="] * 3 + ["33+4="] * 3  # groups contiguous
    assert batch.ids.shape == (6, 6 + 4) and batch.completion_mask.shape == (6, 4)
    # The fixed log-probs agree with chapter 10's sequence_logprobs on the completion tokens.
    expected = sequence_logprobs(policy, batch.ids, batch.attention_mask)[:, -4:] * batch.completion_mask
    torch.testing.assert_close(batch.old_logp * batch.completion_mask, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.ref_logp * batch.completion_mask, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch.advantages, group_advantages(batch.rewards, 3))
    # Temperature: log-probs of the tempered distribution.
    hot = completion_logprobs(policy, batch.ids, batch.attention_mask, 4, temperature=2.0)
    logits = policy(batch.ids, attention_mask=batch.attention_mask)[:, -5:-1] / 2.0
    manual = torch.log_softmax(logits, -1).gather(-1, batch.ids[:, -4:, None]).squeeze(-1)
    torch.testing.assert_close(hot, manual, atol=1e-5, rtol=1e-5)


def test_group_logprobs_equal_completion_logprobs_values_and_gradients():
    # Each prompt run once for its group must give what the G written-out rows give.
    policy = tiny_policy(3)
    config = GRPOConfig(group_size=4, max_new_tokens=4, beta=0.0)
    batch = sample_groups(policy, None, first_char_reward, ["1+2=", "33+45=", "6+7="], config, CharTokenizer(),
                          torch.Generator().manual_seed(4))
    assert batch.prompt_ids.shape[0] == 3 and (batch.completion_mask == 0).any()  # some finished early: padding
    m = batch.completion_mask
    weights = torch.randn(m.shape)
    policy.train()
    for groups in (None, torch.tensor([2, 0])):
        rows = slice(None) if groups is None else torch.cat([torch.arange(8, 12), torch.arange(0, 4)])
        logp, entropy = group_logprobs(policy, batch, temperature=1.5, return_entropy=True, groups=groups)
        (logp * m[rows] * weights[rows]).sum().backward()
        grads = [p.grad.clone() for p in policy.parameters()]
        policy.zero_grad()
        want, want_entropy = completion_logprobs(policy, batch.ids[rows], batch.attention_mask[rows], 4, 1.5, return_entropy=True)
        (want * m[rows] * weights[rows]).sum().backward()
        torch.testing.assert_close(logp * m[rows], want * m[rows], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(entropy * m[rows], want_entropy * m[rows], atol=1e-5, rtol=1e-5)
        for mine, reference in zip(grads, (p.grad for p in policy.parameters())):
            torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-4)
        policy.zero_grad()


def test_grpo_step_with_all_equal_rewards_leaves_policy_unchanged_without_kl():
    policy = tiny_policy(1)
    before = [p.detach().clone() for p in policy.parameters()]
    config = GRPOConfig(group_size=4, max_new_tokens=3, beta=0.0, lr=1e-2)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    _, stats = grpo_step(policy, None, optimizer, lambda p, c: torch.ones(len(c)), ["1+2=", "3+4="], config)
    assert stats["zero_adv_fraction"] == 1.0 and stats["grad_norm"] == 0.0
    for a, b in zip(before, policy.parameters()):
        torch.testing.assert_close(a, b.detach())


def test_train_grpo_raises_reward_on_a_toy_task():
    policy = tiny_policy(2)
    reference = frozen_copy(policy)
    config = GRPOConfig(steps=25, prompts_per_step=8, group_size=8, max_new_tokens=2, lr=2e-2, beta=0.01, seed=0)
    seen = []
    history = train_grpo(policy, reference, first_char_reward, lambda step, rng: ["1+2="] * 8, config,
                         callback=lambda step, h: seen.append(step), progress=False)
    assert seen == list(range(25))
    for key in ("reward", "kl", "entropy", "clip_fraction", "zero_adv_fraction", "completion_length", "seconds"):
        assert len(history[key]) == 25
    assert np.mean(history["reward"][:3]) < 0.3
    assert np.mean(history["reward"][-3:]) > 0.8
    assert history["kl"][-1] > history["kl"][0]  # it moved away from the reference


def test_grpo_config_validation():
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=0)
    with pytest.raises(ValueError, match="minibatches"):
        GRPOConfig(prompts_per_step=10, minibatches=3)
    with pytest.raises(ValueError, match="temperature"):
        GRPOConfig(temperature=0.0)


def test_benchmark_quick_mode_runs_and_prints_side_by_side():
    script = ROOT / "benchmarks" / "bench_ch13_ppo_vs_grpo.py"
    out = subprocess.run([sys.executable, str(script), "--quick", "--threads", "1", "--in-process"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = {line[:28].strip(): line[28:].split() for line in out.stdout.splitlines()[1:]}
    assert lines["steps"] == ["2", "2", "1.00"]
    ppo_mib, grpo_mib, ratio = (float(x) for x in lines["model memory (MiB)"])
    assert grpo_mib < ppo_mib and abs(ratio - 5 / 9) < 0.02  # 5N numbers against 9N: no critic
    assert "wall s to 80% (first check)" in lines


def test_benchmark_seconds_to_reach_reads_the_first_check_at_the_level():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_ppo_vs_grpo", ROOT / "benchmarks" / "bench_ch13_ppo_vs_grpo.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    curve = [(0.0, 0.4), (10.0, 0.85), (20.0, 0.8), (30.0, 0.95)]
    assert bench.seconds_to_reach(curve, 0.8) == 10.0  # the first check at or above, not a later one
    assert bench.seconds_to_reach(curve, 0.9) == 30.0
    assert bench.seconds_to_reach(curve, 0.99) is None


def test_several_epochs_keep_the_sampling_logprobs_and_clip():
    policy = tiny_policy(3)
    config = GRPOConfig(group_size=4, max_new_tokens=3, epochs=3, minibatches=2, prompts_per_step=4, beta=0.0, lr=5e-2)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(0)
    batch = sample_groups(policy, None, first_char_reward, ["1+2=", "3+4=", "5+6=", "7+8="], config, CharTokenizer(), generator)
    assert batch.old_logp is not None and batch.ref_logp is None
    if bool((batch.advantages == 0).all()):
        batch.advantages = torch.linspace(-1, 1, len(batch.advantages))  # make sure there is something to learn
    frozen = batch.old_logp.clone()
    stats = grpo.grpo_update(policy, optimizer, batch, config)
    torch.testing.assert_close(batch.old_logp, frozen)  # the sampling policy's log-probs never change
    assert stats["clip_fraction"] > 0  # later passes move the ratio out of [0.8, 1.2] and the clip binds
    one_pass = GRPOConfig(group_size=4, max_new_tokens=3, prompts_per_step=4)
    assert sample_groups(policy, None, first_char_reward, ["1+2="] * 4, one_pass, CharTokenizer(), generator).old_logp is None
