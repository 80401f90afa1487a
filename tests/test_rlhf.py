"""The RLHF-PPO kernels against plain loops, and the PPO step on a tiny model."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from course_lib import rlhf
from course_lib.gpt import GPT, GPTConfig, sequence_logprobs
from course_lib.tokenizer import CharTokenizer

TOK = CharTokenizer()


def random_completion_mask(gen, B, T, allow_empty=True):
    """Right-padded masks: each row holds a random number of real tokens (0 allowed)."""
    lengths = torch.randint(0 if allow_empty else 1, T + 1, (B,), generator=gen)
    return (torch.arange(T)[None, :] < lengths[:, None]).long()


def tiny_gpt(seed=0, value_head=False, scale=0.3):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16), value_head=value_head)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


# ---------------------------------------------------------------- loop references
def last_token_loop(mask):
    out = torch.zeros(mask.shape, dtype=torch.bool)
    for b in range(mask.shape[0]):
        real = [t for t in range(mask.shape[1]) if mask[b, t]]
        if real:
            out[b, real[-1]] = True
    return out


def kl_rewards_loop(logp, ref_logp, scores, mask, beta):
    B, T = logp.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        last = None
        for t in range(T):
            if mask[b, t]:
                out[b, t] = -beta * (float(logp[b, t]) - float(ref_logp[b, t]))
                last = t
        if last is not None:
            out[b, last] += float(scores[b])
    return out


def gae_loop(rewards, values, mask, gamma, lam):
    """GAE row by row over the real tokens only; the state after the last one is terminal (V = 0)."""
    B, T = rewards.shape
    adv = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        n = int(mask[b].sum())
        running = 0.0
        for t in reversed(range(n)):
            v_next = float(values[b, t + 1]) if t + 1 < n else 0.0
            delta = float(rewards[b, t]) + gamma * v_next - float(values[b, t])
            running = delta + gamma * lam * running
            adv[b, t] = running
    return adv


# ---------------------------------------------------------------- last_token_mask
def test_last_token_mask_matches_loop():
    gen = torch.Generator().manual_seed(0)
    for B, T in [(5, 7), (1, 1), (3, 1), (8, 2)]:
        mask = random_completion_mask(gen, B, T)
        assert torch.equal(rlhf.last_token_mask(mask), last_token_loop(mask))


def test_last_token_mask_example_and_errors():
    got = rlhf.last_token_mask(torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]))
    assert got.tolist() == [[False, False, True, False], [True, False, False, False], [False] * 4, [False, False, False, True]]
    with pytest.raises(ValueError, match="completion_mask"):
        rlhf.last_token_mask(torch.ones(3))


# ---------------------------------------------------------------- kl_penalty_rewards
@pytest.mark.parametrize("beta", [0.0, 0.05, 1.3])
def test_kl_penalty_rewards_matches_loop(beta):
    gen = torch.Generator().manual_seed(1)
    for B, T in [(6, 9), (1, 1), (4, 2)]:
        logp, ref = -torch.rand(B, T, generator=gen) * 3, -torch.rand(B, T, generator=gen) * 3
        scores = torch.randn(B, generator=gen)
        mask = random_completion_mask(gen, B, T)
        got = rlhf.kl_penalty_rewards(logp, ref, scores, mask, beta)
        torch.testing.assert_close(got.double(), kl_rewards_loop(logp, ref, scores, mask, beta), atol=1e-6, rtol=1e-6)


def test_kl_penalty_rewards_worked_example_and_padding():
    got = rlhf.kl_penalty_rewards(torch.tensor([[-1.0, -2.0, -0.3]]), torch.tensor([[-1.5, -1.0, -4.0]]),
                                  torch.tensor([3.0]), torch.tensor([[1, 1, 0]]), 0.1)
    torch.testing.assert_close(got, torch.tensor([[-0.05, 3.1, 0.0]]))
    # Garbage log-probs on padding change nothing; the score sits on the last real token.
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    a = rlhf.kl_penalty_rewards(torch.zeros(2, 4), torch.zeros(2, 4), torch.tensor([1.0, 2.0]), mask, 0.5)
    noisy = torch.tensor([[0.0, 0.0, 9.0, -7.0], [0.0, 0.0, 0.0, 0.0]])
    b = rlhf.kl_penalty_rewards(noisy, torch.zeros(2, 4), torch.tensor([1.0, 2.0]), mask, 0.5)
    torch.testing.assert_close(a, b)
    assert a.tolist() == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]]


def test_kl_penalty_rewards_sum_is_score_minus_beta_kl():
    gen = torch.Generator().manual_seed(2)
    logp, ref = -torch.rand(5, 6, generator=gen), -torch.rand(5, 6, generator=gen)
    scores, mask = torch.randn(5, generator=gen), random_completion_mask(gen, 5, 6, allow_empty=False)
    total = rlhf.kl_penalty_rewards(logp, ref, scores, mask, 0.2).sum(dim=1)
    torch.testing.assert_close(total, scores - 0.2 * rlhf.sequence_kl(logp, ref, mask))


def test_kl_penalty_rewards_errors():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="scores"):
        rlhf.kl_penalty_rewards(x, x, torch.zeros(3), torch.ones(2, 3), 0.1)
    with pytest.raises(ValueError, match="ref_logp"):
        rlhf.kl_penalty_rewards(x, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3), 0.1)
    with pytest.raises(ValueError, match="beta"):
        rlhf.kl_penalty_rewards(x, x, torch.zeros(2), torch.ones(2, 3), -0.1)
    with pytest.raises(ValueError, match="logp"):
        rlhf.kl_penalty_rewards(np.zeros((2, 3)), x, torch.zeros(2), torch.ones(2, 3), 0.1)


def test_sequence_kl_matches_loop():
    gen = torch.Generator().manual_seed(3)
    logp, ref = -torch.rand(4, 5, generator=gen), -torch.rand(4, 5, generator=gen)
    mask = random_completion_mask(gen, 4, 5)
    expected = [sum(float(logp[b, t] - ref[b, t]) for t in range(5) if mask[b, t]) for b in range(4)]
    torch.testing.assert_close(rlhf.sequence_kl(logp, ref, mask).double(), torch.tensor(expected, dtype=torch.float64))


# ---------------------------------------------------------------- masked_whiten
def whiten_loop(x, mask, shift_mean, eps=1e-8):
    real = [float(v) for v, m in zip(x.flatten(), mask.flatten()) if m]
    mu = sum(real) / len(real)
    var = sum((v - mu) ** 2 for v in real) / len(real)
    out = [((float(v) - mu) / math.sqrt(var + eps) + (0.0 if shift_mean else mu)) if m else 0.0
           for v, m in zip(x.flatten(), mask.flatten())]
    return torch.tensor(out, dtype=torch.float64).reshape(x.shape)


@pytest.mark.parametrize("shift_mean", [True, False])
def test_masked_whiten_matches_loop(shift_mean):
    gen = torch.Generator().manual_seed(4)
    for shape in [(5, 8), (1, 3), (7,)]:
        x = torch.randn(shape, generator=gen) * 3 + 2
        mask = (torch.rand(shape, generator=gen) < 0.7).long()
        mask.view(-1)[0] = 1
        got = rlhf.masked_whiten(x, mask, shift_mean=shift_mean)
        torch.testing.assert_close(got.double(), whiten_loop(x, mask, shift_mean), atol=1e-5, rtol=1e-5)


def test_masked_whiten_example_ignores_padding():
    got = rlhf.masked_whiten(torch.tensor([1.0, 3.0, 100.0]), torch.tensor([1, 1, 0]))
    torch.testing.assert_close(got, torch.tensor([-1.0, 1.0, 0.0]))
    real = got[:2]
    assert abs(float(real.mean())) < 1e-6 and abs(float(real.var(unbiased=False)) - 1) < 1e-5
    with pytest.raises(ValueError, match="mask"):
        rlhf.masked_whiten(torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        rlhf.masked_whiten(torch.ones(3), torch.ones(4))


# ---------------------------------------------------------------- clipped_value_loss
def value_loss_loop(values, old, returns, mask, clip):
    total, n = 0.0, 0
    for v, o, r, m in zip(values.flatten().tolist(), old.flatten().tolist(), returns.flatten().tolist(), mask.flatten().tolist()):
        if not m:
            continue
        vc = o + min(max(v - o, -clip), clip)
        total += 0.5 * max((v - r) ** 2, (vc - r) ** 2)
        n += 1
    return total / n


@pytest.mark.parametrize("clip", [0.05, 0.2, 10.0])
def test_clipped_value_loss_matches_loop(clip):
    gen = torch.Generator().manual_seed(5)
    for B, T in [(4, 6), (1, 1), (3, 2)]:
        values, old, ret = (torch.randn(B, T, generator=gen) for _ in range(3))
        mask = random_completion_mask(gen, B, T, allow_empty=False)
        got = rlhf.clipped_value_loss(values, old, ret, mask, clip)
        assert got.dim() == 0
        assert abs(float(got) - value_loss_loop(values, old, ret, mask, clip)) < 1e-5


def test_clipped_value_loss_example_and_gradient():
    v = torch.tensor([[2.0]], requires_grad=True)
    loss = rlhf.clipped_value_loss(v, torch.tensor([[0.0]]), torch.tensor([[3.0]]), torch.ones(1, 1), 0.5)
    assert abs(loss.item() - 3.125) < 1e-6
    loss.backward()
    # The clipped branch is the larger one and does not depend on v beyond the clip: no gradient.
    assert float(v.grad) == 0.0
    # Unclipped: the plain squared error, gradient (v - R).
    v = torch.tensor([[0.1]], requires_grad=True)
    rlhf.clipped_value_loss(v, torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1), 0.5).backward()
    assert abs(float(v.grad) - (0.1 - 1.0)) < 1e-6


def test_clipped_value_loss_ignores_padding_and_rejects_bad_input():
    mask = torch.tensor([[1, 1, 0]])
    a = rlhf.clipped_value_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 50.0]]), mask, 1.0)
    assert abs(float(a) - 0.5 * (1 + 4) / 2) < 1e-6
    with pytest.raises(ValueError, match="clip"):
        rlhf.clipped_value_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 3), mask, 0.0)
    with pytest.raises(ValueError, match="returns"):
        rlhf.clipped_value_loss(torch.zeros(1, 3), torch.zeros(1, 3), torch.zeros(1, 2), mask, 0.2)


# ---------------------------------------------------------------- AdaptiveKLController
def test_adaptive_kl_controller_matches_loop():
    rng = np.random.default_rng(6)
    ctl = rlhf.AdaptiveKLController(0.2, target=3.0, horizon=500)
    beta = 0.2
    for kl, n in zip(rng.uniform(0, 10, size=50), rng.integers(1, 100, size=50)):
        e = kl / 3.0 - 1.0
        e = -0.2 if e < -0.2 else (0.2 if e > 0.2 else e)
        beta = beta * (1 + e * n / 500)
        assert abs(ctl.update(kl, int(n)) - beta) < 1e-12
    assert abs(ctl.value - beta) < 1e-12


def test_adaptive_kl_controller_direction_fixed_and_errors():
    ctl = rlhf.AdaptiveKLController(0.1, target=6.0, horizon=1000)
    ctl.update(12.0, 100)
    assert abs(ctl.value - 0.102) < 1e-12  # the docstring's example: error clipped at +0.2
    ctl.update(6.0, 100)
    assert abs(ctl.value - 0.102) < 1e-12  # on target: unchanged
    ctl.update(0.0, 100)
    assert ctl.value < 0.102  # too little KL: a smaller penalty
    fixed = rlhf.AdaptiveKLController(0.3, target=None)
    fixed.update(100.0, 1000)
    assert fixed.value == 0.3
    with pytest.raises(ValueError, match="target"):
        rlhf.AdaptiveKLController(0.1, target=-1.0)
    with pytest.raises(ValueError, match="kl"):
        ctl.update(float("nan"), 1)
    with pytest.raises(ValueError, match="init_kl_coef"):
        rlhf.AdaptiveKLController(-0.1)


# ---------------------------------------------------------------- advantages over tokens
@pytest.mark.parametrize("gamma, lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 1.0), (0.99, 0.0)])
def test_token_advantages_match_loop(gamma, lam):
    gen = torch.Generator().manual_seed(7)
    for B, T in [(6, 8), (1, 1), (3, 2)]:
        rewards, values = torch.randn(B, T, generator=gen), torch.randn(B, T, generator=gen)
        mask = random_completion_mask(gen, B, T)
        rewards = rewards * mask  # as kl_penalty_rewards makes them
        adv, ret = rlhf.token_advantages(rewards, values, mask, gamma, lam)
        expected = gae_loop(rewards, values, mask, gamma, lam)
        torch.testing.assert_close(adv.double(), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ret.double(), (expected + values.double()) * mask, atol=1e-5, rtol=1e-5)


def test_padding_neither_receives_reward_nor_bootstraps():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0]])
    values = torch.tensor([[0.1, 0.2, 0.3, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    adv, _ = rlhf.token_advantages(rewards, values, mask, 1.0, 1.0)
    # Junk in the padded positions (a reward, large values) must not change a thing.
    junk_rewards, junk_values = rewards.clone(), values.clone()
    junk_rewards[0, 3:] = 5.0
    junk_values[0, 3:] = 100.0
    adv2, _ = rlhf.token_advantages(junk_rewards, junk_values, mask, 1.0, 1.0)
    torch.testing.assert_close(adv, adv2)
    assert adv[0, 3:].abs().sum() == 0
    # lam = gamma = 1: A_t = (sum of rewards from t on) - V(s_t), nothing beyond the last real token.
    torch.testing.assert_close(adv[0, :3], torch.tensor([1.0 - 0.1, 1.0 - 0.2, 1.0 - 0.3]))
    torch.testing.assert_close(adv[1], torch.tensor([2.0 - 0.1, 2.0 - 0.2, 2.0 - 0.3, 2.0 - 0.4, 2.0 - 0.5]))


# ---------------------------------------------------------------- log-probs and values of completions
def padded_batch():
    prompts = ["12+3=", "4+5=", "the soup was"]
    prompt_ids, prompt_mask = TOK.encode_batch(prompts)
    completions = torch.tensor([[6, 8, 2, 0], [14, 2, 0, 0], [9, 9, 9, 9]])
    completion_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    ids = torch.cat([prompt_ids, completions], 1)
    att = torch.cat([prompt_mask, completion_mask], 1)
    return ids, att, completion_mask, prompt_ids.shape[1]


def test_completion_logprobs_agree_with_sequence_logprobs_and_entropy_is_a_distribution():
    model = tiny_gpt(0)
    ids, att, cmask, P = padded_batch()
    with torch.no_grad():
        logp, entropy = rlhf.completion_logprobs_and_entropy(model, ids, att, P)
        expected = sequence_logprobs(model, ids, att)[:, P:]
    torch.testing.assert_close(logp * cmask, expected, atol=1e-5, rtol=1e-5)
    assert entropy.shape == cmask.shape and bool((entropy > 0).all()) and bool((entropy <= math.log(TOK.vocab_size) + 1e-5).all())


def test_completion_values_read_the_state_before_each_token():
    critic = tiny_gpt(1, value_head=True)
    ids, att, cmask, P = padded_batch()
    with torch.no_grad():
        values = rlhf.completion_values(critic, ids, att, P)
        for b in range(ids.shape[0]):
            for t in range(cmask.shape[1]):
                if not cmask[b, t]:
                    continue
                prefix = ids[b, : P + t][att[b, : P + t].bool()]  # the prompt and a_0 .. a_{t-1}
                assert abs(float(values[b, t]) - float(critic.values(prefix[None])[0, -1])) < 1e-4


# ---------------------------------------------------------------- the PPO step
def count_reward(prompts, completions):
    """Toy reward: how many 'a' characters the completion holds."""
    return torch.tensor([float(c.count("a")) for c in completions])


def toy_run(steps, seed=0, **overrides):
    policy = tiny_gpt(2, scale=0.1)
    reference = copy.deepcopy(policy)
    critic = tiny_gpt(3, value_head=True, scale=0.1)
    config = rlhf.RLHFConfig(**({"steps": steps, "batch_size": 16, "max_new_tokens": 6, "epochs": 2, "minibatches": 2,
                                 "lr": 3e-3, "critic_lr": 3e-3, "kl_coef": 0.01, "kl_target": None, "seed": seed,
                                 "torch_threads": 1} | overrides))
    history = rlhf.train_rlhf(policy, reference, critic, count_reward, lambda step, rng: ["ab", "b+c="] * 8,
                              config, progress=False)
    return history, policy, reference, critic


def test_train_rlhf_history_and_frozen_reference():
    steps = 3
    policy = tiny_gpt(2, scale=0.1)
    reference = copy.deepcopy(policy)
    frozen = copy.deepcopy(reference.state_dict())
    critic = tiny_gpt(3, value_head=True, scale=0.1)
    critic_before = copy.deepcopy(critic.state_dict())
    calls = []
    config = rlhf.RLHFConfig(steps=steps, batch_size=8, max_new_tokens=5, epochs=1, minibatches=2, seed=1, torch_threads=1)
    history = rlhf.train_rlhf(policy, reference, critic, count_reward, lambda step, rng: ["ab"] * 8, config,
                              callback=lambda step, h: calls.append((step, len(h["reward"]))), progress=False,
                              metrics_fn=lambda p, c: {"n": len(c)})
    for key in ("reward", "kl", "entropy", "clip_fraction", "value_loss", "seconds", "kl_coef", "policy_loss", "n"):
        assert len(history[key]) == steps and all(np.isfinite(history[key])), key
    assert calls == [(0, 1), (1, 2), (2, 3)]
    assert history["kl"][0] == pytest.approx(0.0, abs=1e-5)  # before the first update the policy is the reference
    assert all(torch.equal(v, frozen[k]) for k, v in reference.state_dict().items())
    assert any(not torch.equal(v, critic_before[k]) for k, v in critic.state_dict().items())
    assert any(not torch.equal(v, frozen[k]) for k, v in policy.state_dict().items())


def test_train_rlhf_is_deterministic_given_the_seed():
    a, *_ = toy_run(2, seed=5)
    b, *_ = toy_run(2, seed=5)
    assert a["reward"] == b["reward"] and a["kl"] == b["kl"]


def test_ppo_raises_a_toy_reward():
    history, *_ = toy_run(40)
    first, last = np.mean(history["reward"][:5]), np.mean(history["reward"][-5:])
    # Seeds 0-3 go from about 0.15 to about 5.9 "a"s out of 6 tokens.
    assert last > first + 3.0, (first, last)
    assert history["kl"][-1] > 0.0  # moving towards the reward moves away from the reference


def test_ppo_step_rollout_is_consistent():
    policy, critic = tiny_gpt(2, scale=0.1), tiny_gpt(3, value_head=True, scale=0.1)
    reference = copy.deepcopy(policy)
    config = rlhf.RLHFConfig(batch_size=4, max_new_tokens=5, epochs=1, minibatches=1, kl_coef=0.1)
    state = rlhf.make_state(policy, critic, config)
    stats, r = rlhf.ppo_step(policy, reference, critic, count_reward, ["a", "bb", "c+c=", "ab"], state, config)
    m = r.completion_mask
    assert not r.old_logp.requires_grad and not r.advantages.requires_grad
    assert r.ids.shape == (4, r.prompt_length + config.max_new_tokens) and r.ids.shape == r.attention_mask.shape
    assert (r.advantages * (1 - m)).abs().sum() == 0 and (r.returns * (1 - m)).abs().sum() == 0
    torch.testing.assert_close(r.rewards.sum(1), r.scores - 0.1 * rlhf.sequence_kl(r.old_logp, r.ref_logp, m))
    assert stats["reward"] == pytest.approx(float(count_reward(None, r.completions).mean()))
    assert r.completions == TOK.decode_batch(r.ids[:, r.prompt_length:], m)


@pytest.mark.parametrize("temperature", [1.0, 0.8])
def test_rollout_records_the_logprobs_and_entropy_of_the_policy_that_sampled(temperature):
    policy = tiny_gpt(4, scale=0.4)
    config = rlhf.RLHFConfig(batch_size=6, minibatches=2, max_new_tokens=6, temperature=temperature)
    r = rlhf.generate_rollout(policy, ["a", "bb", "c+c=", "ab", "b", "ca"], config, torch.Generator().manual_seed(0))
    m = r.completion_mask
    with torch.no_grad():  # the policy run again over the finished sequences, without a cache
        logp, entropy = rlhf.completion_logprobs_and_entropy(policy, r.ids, r.attention_mask, r.prompt_length, temperature)
    torch.testing.assert_close(r.old_logp, logp * m, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r.entropy, entropy * m, atol=1e-5, rtol=1e-5)
    assert not r.old_logp.is_inference()  # usable as a constant in the update's graph


def test_config_validation_and_fast_setting():
    with pytest.raises(ValueError, match="minibatches"):
        rlhf.RLHFConfig(batch_size=10, minibatches=4)
    with pytest.raises(ValueError, match="temperature"):
        rlhf.RLHFConfig(temperature=0.0)
    fast, full = rlhf.rlhf_config(True), rlhf.rlhf_config(False)
    assert fast.steps < full.steps
    assert rlhf.rlhf_config(True, steps=3).steps == 3


def test_torch_reward_fn_wraps_numpy_scores():
    fn = rlhf.torch_reward_fn(lambda p, c: np.array([len(x) for x in c]))
    out = fn(["a", "b"], ["xy", "z"])
    assert out.dtype == torch.float32 and out.tolist() == [2.0, 1.0]


# ---------------------------------------------------------------- the live dashboard (plain functions, no kernel)
def test_training_dashboard_callback_fills_the_traces():
    from course_lib.plots import training_dashboard, update_training_dashboard

    fig = training_dashboard([("reward", ["reward", "true score"]), ("KL", ["kl"]), ("entropy", ["entropy"]),
                              ("clip", ["clip_fraction"])], cols=3, live=False)
    assert [t.name for t in fig.data] == ["reward", "true score", "kl", "entropy", "clip_fraction"]
    history = {"reward": [0.1, 0.5, 0.9], "kl": [0.0, 1.0, 2.0], "entropy": [1.0, 0.8, 0.7], "unrelated": [1.0]}
    assert update_training_dashboard(fig, history) == 3
    assert list(fig.data[0].y) == [0.1, 0.5, 0.9] and list(fig.data[0].x) == [0, 1, 2]
    assert list(fig.data[2].y) == [0.0, 1.0, 2.0]
    assert fig.data[1].y is None or len(fig.data[1].y) == 0  # no history yet for it
    history["true score"] = [1.0]
    assert update_training_dashboard(fig, history) == 4 and list(fig.data[1].y) == [1.0]
    with pytest.raises(ValueError, match="panels"):
        training_dashboard([])


def test_training_dashboard_is_a_widget_when_live():
    import plotly.graph_objects as go

    from course_lib.plots import training_dashboard, update_training_dashboard

    fig = training_dashboard([("reward", ["reward"])], live=True)
    assert isinstance(fig, go.FigureWidget)
    update_training_dashboard(fig, {"reward": [1.0, 2.0]})
    assert list(fig.data[0].y) == [1.0, 2.0]
