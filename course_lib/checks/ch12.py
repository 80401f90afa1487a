"""Checks for exercise 12: the KL-shaped per-token reward, a rollout's advantages, one PPO minibatch loss.

The references are plain loops written independently of ``course_lib.rlhf``:
log-probabilities, entropies and values come from running each model on one
real prefix at a time; GAE runs backwards over each row's real tokens; the
losses are summed token by token.
"""

from __future__ import annotations

import math

import torch

from ..gpt import GPT, GPTConfig
from ..rlhf import Rollout
from . import assert_close

__all__ = [
    "check_kl_penalty_rewards",
    "check_score_rollout",
    "check_ppo_losses",
    "tiny_models",
    "tiny_rollout",
]

VOCAB = 13


def _random_gpt(seed: int, value_head: bool = False, scale: float = 0.3) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=1, n_head=2, n_embd=16), value_head=value_head)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


def tiny_models(seed: int = 0) -> tuple[GPT, GPT, GPT]:
    """(policy, reference, critic): three small random GPTs, all different, the critic with a value head."""
    return _random_gpt(100 + seed), _random_gpt(200 + seed), _random_gpt(300 + seed, value_head=True)


def tiny_rollout(seed: int = 0, hidden: bool = False) -> Rollout:
    """A rollout of B = 4 (5 when hidden) completions: left-padded prompts (P = 4), right-padded completions (T = 5).

    Token ids 3..12 are ordinary tokens, 0 is padding. The scores are random numbers.
    """
    gen = torch.Generator().manual_seed(seed)
    prompt_mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    completion_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    B = 5 if hidden else 4
    prompt_mask, completion_mask = prompt_mask[:B], completion_mask[:B]
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    ids = torch.randint(3, VOCAB, attention_mask.shape, generator=gen) * attention_mask
    return Rollout(prompts=[f"prompt {b}" for b in range(B)], completions=[f"completion {b}" for b in range(B)], ids=ids,
                   attention_mask=attention_mask, completion_mask=completion_mask, prompt_length=prompt_mask.shape[1],
                   scores=torch.randn(B, generator=gen) * 2)


def _labels(idx) -> str:
    return f"completion {idx[0]}, token {idx[1]}" if len(idx) == 2 else f"index {idx}"


# ---------------------------------------------------------------- kl_penalty_rewards
def _kl_rewards_loop(logp, ref_logp, scores, mask, beta):
    B, T = logp.shape
    out = torch.zeros(B, T)
    for b in range(B):
        last = -1
        for t in range(T):
            if mask[b, t]:
                out[b, t] = -beta * (float(logp[b, t]) - float(ref_logp[b, t]))
                last = t
        if last >= 0:
            out[b, last] += float(scores[b])
    return out


def _kl_cases(hidden: bool):
    gen = torch.Generator().manual_seed(21 if hidden else 20)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    yield "three completions of different lengths", mask, 0.1, gen
    yield "no KL penalty (beta = 0): only the score, on the last real token", mask, 0.0, gen
    if hidden:
        yield "a large beta", torch.tensor([[1, 1, 0], [1, 1, 1]]), 2.0, gen
        yield "one token per completion (T = 1)", torch.ones(3, 1, dtype=torch.long), 0.3, gen
        yield "a completion with no token at all", torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]), 0.5, gen


def _diagnose_kl(logp, ref_logp, scores, mask, beta, got) -> str:
    if not isinstance(got, torch.Tensor) or got.shape != mask.shape:
        return ""
    B, T = mask.shape
    m = mask.float()
    kl = -beta * (logp - ref_logp)
    on_last_column = kl * m
    on_last_column[:, -1] += scores
    if torch.allclose(got, on_last_column, atol=1e-5):
        return (" Hint: the score went to the last column, which is padding for completions that ended early; it belongs"
                " on each completion's last real token (its <eos>).")
    n_real = mask.sum(dim=1)
    after_last = kl * m
    rows = torch.arange(B)[n_real < T]
    after_last[rows, n_real[n_real < T]] += scores[n_real < T]
    after_last[n_real == T, -1] += scores[n_real == T]
    if torch.allclose(got, after_last, atol=1e-5):
        return " Hint: the score landed one token after the last real one (on the first padding token): off by one."
    expected = _kl_rewards_loop(logp, ref_logp, scores, mask, beta)
    if torch.allclose(got * m, expected * m, atol=1e-5):
        return " Hint: the real tokens are right, but padding must get reward 0: multiply the KL term by the mask."
    if torch.allclose(got, _kl_rewards_loop(ref_logp, logp, scores, mask, beta), atol=1e-5):
        return " Hint: the sign of the KL term is flipped: it is -beta * (log pi - log pi_ref), a penalty for moving away."
    return ""


def check_kl_penalty_rewards(kl_penalty_rewards, hidden: bool = False) -> None:
    """Check ``kl_penalty_rewards(logp, ref_logp, scores, completion_mask, beta)`` against a loop."""
    n = 0
    for case, mask, beta, gen in _kl_cases(hidden):
        B, T = mask.shape
        logp, ref_logp = -3 * torch.rand(B, T, generator=gen), -3 * torch.rand(B, T, generator=gen)
        # Padding holds junk, as a padded batch often does: it must not matter.
        logp = torch.where(mask.bool(), logp, torch.full_like(logp, -7.0))
        scores = torch.randn(B, generator=gen) * 2
        expected = _kl_rewards_loop(logp, ref_logp, scores, mask, beta)
        got = kl_penalty_rewards(logp.clone(), ref_logp.clone(), scores.clone(), mask.clone(), beta)
        try:
            assert_close(got, expected, "kl_penalty_rewards", case, atol=1e-5, rtol=1e-5, labels=_labels)
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_kl(logp, ref_logp, scores, mask, beta, got)) from None
        n += 1
    print(f"kl_penalty_rewards: all {n} cases pass.")


# ---------------------------------------------------------------- score_rollout
def _prefix(rollout: Rollout, b: int, t: int) -> torch.Tensor:
    """The real tokens of the state s_t of completion b: its prompt and its first t completion tokens, (1, L)."""
    P = rollout.prompt_length
    return rollout.ids[b, : P + t][rollout.attention_mask[b, : P + t].bool()][None]


def _log_softmax_list(z: list[float]) -> list[float]:
    top = max(z)
    norm = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - norm for v in z]


@torch.no_grad()
def _per_token_loop(model: GPT, rollout: Rollout, what: str) -> torch.Tensor:
    """log pi(a_t|s_t), the entropy of pi(.|s_t), or V(s_t), one prefix at a time; 0 on padding. (B, T)."""
    B, T = rollout.completion_mask.shape
    out = torch.zeros(B, T)
    for b in range(B):
        for t in range(T):
            if not rollout.completion_mask[b, t]:
                continue
            prefix = _prefix(rollout, b, t)
            if what == "value":
                out[b, t] = float(model.values(prefix)[0, -1])
                continue
            logp = _log_softmax_list(model(prefix)[0, -1].tolist())
            if what == "logp":
                out[b, t] = logp[int(rollout.ids[b, rollout.prompt_length + t])]
            else:
                out[b, t] = -sum(math.exp(v) * v for v in logp)
    return out


def _gae_loop(rewards, values, mask, gamma, lam):
    B, T = rewards.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        n = int(mask[b].sum())
        running = 0.0
        for t in reversed(range(n)):
            v_next = float(values[b, t + 1]) if t + 1 < n else 0.0  # after the last real token: terminal
            running = float(rewards[b, t]) + gamma * v_next - float(values[b, t]) + gamma * lam * running
            adv[b, t] = running
    return adv


def _score_rollout_reference(policy, reference, critic, rollout, beta, gamma, lam):
    old_logp = _per_token_loop(policy, rollout, "logp")
    ref_logp = _per_token_loop(reference, rollout, "logp")
    values = _per_token_loop(critic, rollout, "value")
    rewards = _kl_rewards_loop(old_logp, ref_logp, rollout.scores, rollout.completion_mask, beta)
    advantages = _gae_loop(rewards, values, rollout.completion_mask, gamma, lam)
    returns = (advantages + values) * rollout.completion_mask
    return old_logp, ref_logp, values, rewards, advantages, returns


def _score_cases(hidden: bool):
    yield "beta 0.1, gamma 1, lam 0.95", 0, 0.1, 1.0, 0.95
    yield "beta 0.5, gamma 0.9, lam 0.5", 1, 0.5, 0.9, 0.5
    if hidden:
        yield "lam 1: returns are the rewards still to come", 2, 0.2, 1.0, 1.0
        yield "lam 0: one-step TD errors", 3, 0.05, 0.99, 0.0


def _diagnose_score(name, got, rollout, ref) -> str:
    old_logp, ref_logp, values, rewards, advantages, returns = ref
    m = rollout.completion_mask
    if name == "rewards":
        scores_only = _kl_rewards_loop(old_logp, old_logp, rollout.scores, m, 0.0)
        if torch.allclose(got, scores_only, atol=1e-4):
            return (" Hint: the KL term is zero everywhere. Was the KL taken against the policy itself (pi_old) instead of the"
                    " frozen reference? It must be -beta * (log pi_old - log pi_ref), with log pi_ref from `reference`.")
    if name in ("old_logp", "values"):
        return (" Hint: the logits (or values) at position P - 1 + t belong to the state before completion token t:"
                " slice [:, P - 1 : -1], not [:, P:].")
    if name == "advantages":
        if torch.allclose(got * m, advantages * m, atol=1e-4):
            return " Hint: the real tokens are right; padding must be 0 (multiply by the completion mask)."
        return (" Hint: run GAE over the completion tokens only, with the last real token marked done (nothing after it"
                " bootstraps), and values / rewards at padding set to 0.")
    return ""


def check_score_rollout(score_rollout, hidden: bool = False) -> None:
    """Check ``score_rollout(policy, reference, critic, rollout, beta, gamma, lam)``.

    It must return (old_logp, rewards, advantages, returns), each (B, T) and 0 on padding.
    """
    n = 0
    for case, seed, beta, gamma, lam in _score_cases(hidden):
        policy, reference, critic = tiny_models(seed)
        rollout = tiny_rollout(seed, hidden)
        ref = _score_rollout_reference(policy, reference, critic, rollout, beta, gamma, lam)
        out = score_rollout(policy, reference, critic, rollout, beta, gamma, lam)
        if out is None:
            raise AssertionError(f"score_rollout returned None for case '{case}'. Did you forget `return`?")
        if not isinstance(out, tuple) or len(out) != 4:
            raise AssertionError(f"score_rollout, case '{case}': expected a tuple (old_logp, rewards, advantages, returns)")
        expected = dict(zip(("old_logp", "rewards", "advantages", "returns"), (ref[0], ref[3], ref[4], ref[5])))
        m = rollout.completion_mask
        for name, got in zip(expected, out):
            if isinstance(got, torch.Tensor) and got.requires_grad:
                raise AssertionError(f"score_rollout, case '{case}': {name} carries a gradient. Compute the rollout's"
                                     " numbers under torch.no_grad(): they are constants of the PPO update.")
            if name == "old_logp" and isinstance(got, torch.Tensor) and got.shape == m.shape:
                got = got * m  # log-probs at padding are not used; allow any value there
            try:
                assert_close(got, expected[name], f"score_rollout ({name})", case, atol=1e-4, rtol=1e-4, labels=_labels)
            except AssertionError as err:
                hint = _diagnose_score(name, got, rollout, ref) if isinstance(got, torch.Tensor) and got.shape == m.shape else ""
                raise AssertionError(str(err) + hint) from None
        n += 1
    print(f"score_rollout: all {n} cases pass.")


# ---------------------------------------------------------------- ppo_losses
def _training_rollout(seed: int, hidden: bool) -> tuple[GPT, GPT, Rollout]:
    """A policy and critic, and a rollout whose old log-probs, values and advantages differ from theirs."""
    policy, _, critic = tiny_models(seed)
    rollout = tiny_rollout(seed, hidden)
    gen = torch.Generator().manual_seed(50 + seed)
    m = rollout.completion_mask
    logp = _per_token_loop(policy, rollout, "logp")
    values = _per_token_loop(critic, rollout, "value")
    # The policy has "moved" since the rollout: ratios up to e^{+-0.6}, so some are clipped.
    rollout.old_logp = (logp + 0.6 * (2 * torch.rand(m.shape, generator=gen) - 1)) * m
    rollout.advantages = torch.randn(m.shape, generator=gen) * m
    rollout.old_values = (values + 0.5 * torch.randn(m.shape, generator=gen)) * m
    rollout.returns = (rollout.old_values + torch.randn(m.shape, generator=gen)) * m
    # Junk where nothing counts: padding must be masked out, whatever it holds.
    pad = ~m.bool()
    rollout.old_logp[pad], rollout.advantages[pad] = -5.0, 3.0
    rollout.old_values[pad], rollout.returns[pad] = 4.0, -6.0
    return policy, critic, rollout


def _losses_reference(policy, critic, rollout, clip_eps, value_clip, entropy_coef):
    logp = _per_token_loop(policy, rollout, "logp")
    entropy = _per_token_loop(policy, rollout, "entropy")
    values = _per_token_loop(critic, rollout, "value")
    m = rollout.completion_mask
    policy_sum = value_sum = 0.0
    n = int(m.sum())
    for b in range(m.shape[0]):
        for t in range(m.shape[1]):
            if not m[b, t]:
                continue
            ratio = math.exp(float(logp[b, t]) - float(rollout.old_logp[b, t]))
            a = float(rollout.advantages[b, t])
            clipped = min(max(ratio, 1 - clip_eps), 1 + clip_eps)
            policy_sum += -min(ratio * a, clipped * a) - entropy_coef * float(entropy[b, t])
            v, v_old, ret = float(values[b, t]), float(rollout.old_values[b, t]), float(rollout.returns[b, t])
            v_clip = v_old + min(max(v - v_old, -value_clip), value_clip)
            value_sum += 0.5 * max((v - ret) ** 2, (v_clip - ret) ** 2)
    return policy_sum / n, value_sum / n


def _losses_cases(hidden: bool):
    yield "clip 0.2, value clip 0.2, no entropy bonus", 0, 0.2, 0.2, 0.0
    yield "clip 0.1, value clip 0.5, entropy bonus 0.01", 1, 0.1, 0.5, 0.01
    if hidden:
        yield "wide clips (nothing clipped)", 2, 10.0, 10.0, 0.0
        yield "tight clips, a large entropy bonus", 3, 0.05, 0.05, 0.1


def check_ppo_losses(ppo_losses, hidden: bool = False) -> None:
    """Check ``ppo_losses(policy, critic, rollout, clip_eps, value_clip, entropy_coef) -> (policy_loss, value_loss)``."""
    n = 0
    for case, seed, clip_eps, value_clip, entropy_coef in _losses_cases(hidden):
        policy, critic, rollout = _training_rollout(seed, hidden)
        expected_policy, expected_value = _losses_reference(policy, critic, rollout, clip_eps, value_clip, entropy_coef)
        out = ppo_losses(policy, critic, rollout, clip_eps, value_clip, entropy_coef)
        if out is None:
            raise AssertionError(f"ppo_losses returned None for case '{case}'. Did you forget `return`?")
        if not isinstance(out, tuple) or len(out) != 2:
            raise AssertionError(f"ppo_losses, case '{case}': expected a tuple (policy_loss, value_loss)")
        for name, got, expected, model in (("policy_loss", out[0], expected_policy, policy),
                                           ("value_loss", out[1], expected_value, critic)):
            if not isinstance(got, torch.Tensor) or got.dim() != 0:
                raise AssertionError(f"ppo_losses, case '{case}': {name} must be a 0-d tensor (a scalar to backpropagate);"
                                     f" got {type(got).__name__} {tuple(getattr(got, 'shape', ()))}")
            hint = ""
            if name == "value_loss":
                hint = (" Hint: average the clipped value loss over the real completion tokens only (padding holds junk"
                        " targets), take the max of the two squared errors, and multiply by 1/2.")
            else:
                hint = (" Hint: the logits at position P - 1 + t score completion token t (slice [:, P - 1 : -1]); average"
                        " over the completion mask only (not over prompt tokens, not over padding); ratio ="
                        " exp(logp - old_logp); loss = -mean(min(ratio A, clip(ratio) A)) - entropy_coef * mean entropy.")
            try:
                assert_close(got, torch.tensor(expected, dtype=got.dtype), f"ppo_losses ({name})", case, atol=1e-4, rtol=1e-4)
            except AssertionError as err:
                raise AssertionError(str(err) + hint) from None
            if not got.requires_grad:
                raise AssertionError(f"ppo_losses, case '{case}': {name} carries no gradient; do not use torch.no_grad() or"
                                     " .detach() on the new log-probs or values.")
            grads = torch.autograd.grad(got, list(model.parameters()), allow_unused=True)
            if all(g is None or float(g.abs().sum()) == 0 for g in grads):
                raise AssertionError(f"ppo_losses, case '{case}': {name} does not depend on the "
                                     f"{'policy' if model is policy else 'critic'}'s weights.")
        n += 1
    print(f"ppo_losses: all {n} cases pass.")
