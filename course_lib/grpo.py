"""GRPO: group relative policy optimisation (Shao et al. 2024, "DeepSeekMath", section 4).

PPO for language models (chapter 12) keeps four models: the policy, a frozen
reference, a reward model and a critic as large as the policy. GRPO drops
the critic. For each prompt it samples a *group* of G completions, scores
them, and uses each completion's reward standardised within its group as the
advantage of every one of its tokens:

    A_i = (R_i - mean(R_1..R_G)) / (std(R_1..R_G) + eps)

The other completions of the same prompt are the baseline a critic would have
had to learn. The loss is PPO's clipped surrogate with the KL to the
reference inside it (estimated per token with k3, see
``course_lib.losses.kl_k3``), averaged over each completion's tokens and
then over completions (DeepSeekMath, eq. 3).

Kernels (pure functions, torch in torch out, numpy in numpy out where it
makes sense):

* ``group_advantages``: the group-standardised advantage;
* ``sequence_mean``, ``token_mean``, ``dr_grpo_sum``: three ways to reduce a
  per-token loss (B, T) to a scalar, one function each (chapter 14 compares
  them);
* ``grpo_loss``: the clipped objective minus beta * k3, reduced by one of them.

The loop: ``GRPOConfig`` / ``grpo_config``, ``sample_groups`` (generate and
score one batch), ``group_logprobs`` (the completions' log-probs, each prompt
run once for its whole group), ``grpo_update`` (the gradient steps on the
batch), ``grpo_step`` (both), and ``train_grpo`` (many steps with a progress
bar and a history).
Letters: B = n_prompts * G completions, T completion tokens, P prompt tokens.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import FAST
from .gpt import GPT, entropy_from_logits, generate, left_pad, token_logprobs
from .losses import _check_same_shape, _is_torch, kl_k3, masked_mean, ppo_clip_objective
from .tokenizer import CharTokenizer

__all__ = [
    "group_advantages",
    "sequence_mean",
    "token_mean",
    "dr_grpo_sum",
    "grpo_loss",
    "all_equal_groups",
    "all_equal_probability",
    "bernoulli_advantage_moments",
    "GRPOConfig",
    "grpo_config",
    "GroupBatch",
    "completion_logprobs",
    "group_logprobs",
    "sample_groups",
    "grpo_update",
    "grpo_step",
    "train_grpo",
    "verifier_reward_fn",
    "frozen_copy",
]


# ---------------------------------------------------------------- advantages
def group_advantages(rewards, group_size: int, scale: bool = True, eps: float = 1e-4):
    """Group-standardised advantages: A_i = (R_i - mean_g R) / (std_g R + eps).

    rewards: shape (..., B) with B = n_prompts * group_size, the G completions of one
    prompt contiguous (entries g*G .. g*G + G - 1 form group g). group_size: G >= 1.
    scale: divide by the group's standard deviation (DeepSeekMath); ``scale=False``
    only subtracts the group mean (Dr. GRPO, Liu et al. 2025, who argue the division
    up-weights prompts that are nearly always right or nearly always wrong).
    eps > 0 keeps a group whose rewards are all equal (std = 0) at A = 0 rather than 0/0.
    The std is the population one (divide by G): a standardised group then has mean 0
    and mean square 1 when its rewards differ. Returns the shape of ``rewards``.

    Example, G = 2: rewards [1, 0, 1, 1] give [1, -1, 0, 0] (up to eps): the second
    group's completions are equally good, so neither is pushed.

    >>> np.round(group_advantages(np.array([1.0, 0.0, 1.0, 1.0]), group_size=2), 3)
    array([ 1., -1.,  0.,  0.])
    """
    if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1; got {group_size!r}")
    eps = float(eps)
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number > 0 (it guards the division by a zero std); got {eps}")
    torch_in = _is_torch(rewards)
    if not torch_in:
        rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim < 1 or rewards.shape[-1] % group_size:
        raise ValueError(f"rewards must have shape (..., n_prompts * group_size) with group_size={group_size}; got shape {tuple(rewards.shape)}")
    grouped = rewards.reshape(*rewards.shape[:-1], -1, group_size)  # (..., n_prompts, G)
    if torch_in:
        mean = grouped.mean(dim=-1, keepdim=True)
        centred = grouped - mean
        if scale:
            centred = centred / (grouped.std(dim=-1, keepdim=True, correction=0) + eps)
    else:
        centred = grouped - grouped.mean(axis=-1, keepdims=True)
        if scale:
            centred = centred / (grouped.std(axis=-1, keepdims=True) + eps)
    return centred.reshape(rewards.shape)


def all_equal_groups(rewards, group_size: int):
    """True for each group whose G rewards are all equal (its advantages are all 0: no signal).

    rewards: shape (..., n_prompts * G), groups contiguous. Returns a bool array (..., n_prompts).
    With 0/1 rewards of success probability p, a group is all-equal with probability
    p^G + (1 - p)^G.

    >>> all_equal_groups(np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]), group_size=2)
    array([False,  True,  True])
    """
    if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1; got {group_size!r}")
    if rewards.ndim < 1 or rewards.shape[-1] % group_size:
        raise ValueError(f"rewards must have shape (..., n_prompts * group_size) with group_size={group_size}; got shape {tuple(rewards.shape)}")
    grouped = rewards.reshape(*rewards.shape[:-1], -1, group_size)
    if _is_torch(grouped):
        return (grouped == grouped[..., :1]).all(dim=-1)
    return (grouped == grouped[..., :1]).all(axis=-1)


def all_equal_probability(p, group_size: int):
    """Probability that G completions with 0/1 rewards of success probability p all agree: p^G + (1 - p)^G.

    p: array of success probabilities in [0, 1] (any shape); group_size: G >= 1. Returns the shape of p.
    Such a group's advantages are all 0: its prompt teaches nothing this step.

    >>> all_equal_probability(np.array([0.5, 0.1]), 4).round(4)
    array([0.125 , 0.6562])
    """
    if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1; got {group_size!r}")
    p = np.asarray(p, dtype=np.float64)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p must lie in [0, 1]")
    return p**group_size + (1.0 - p) ** group_size


def bernoulli_advantage_moments(p, group_size: int, eps: float = 1e-4):
    """Mean and standard deviation of the group-standardised advantage of a *correct* completion.

    Rewards are 0/1 with success probability p. A correct completion shares its group with
    K ~ Binomial(G - 1, p) other correct ones, so the group's success rate is q = (K + 1) / G,
    its population std sqrt(q (1 - q)), and the completion's advantage
    A = (1 - q) / (sqrt(q (1 - q)) + eps) (0 when the whole group is right). Averaging over the
    G possible values of K gives the exact mean and std of A. As G grows they approach the
    advantage standardised with the true p, sqrt((1 - p) / p), and the std shrinks.

    p: array of probabilities in (0, 1]; group_size: G >= 1. Returns (mean, std), each the shape of p.

    >>> [m.round(3) for m in bernoulli_advantage_moments(np.array([0.5]), 2)]    # K = 0: A = 1; K = 1: A = 0
    [array([0.5]), array([0.5])]
    """
    if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1; got {group_size!r}")
    p = np.asarray(p, dtype=np.float64)
    if np.any((p <= 0) | (p > 1)):
        raise ValueError("p must lie in (0, 1]: a correct completion must be possible")
    G = group_size
    k = np.arange(G)  # (G,): how many of the other G - 1 completions are right
    log_binom = np.array([math.lgamma(G) - math.lgamma(i + 1) - math.lgamma(G - i) for i in range(G)])
    with np.errstate(divide="ignore", invalid="ignore"):  # p = 1: log(1 - p) = -inf, used only where its power is 0
        log_p, log_1p = np.log(p)[..., None], np.log1p(-p)[..., None]
        weight = np.exp(log_binom + np.where(k > 0, k * log_p, 0.0) + np.where(G - 1 - k > 0, (G - 1 - k) * log_1p, 0.0))
    q = (k + 1) / G
    advantage = (1 - q) / (np.sqrt(q * (1 - q)) + eps)  # (G,)
    mean = (weight * advantage).sum(-1)
    var = (weight * advantage**2).sum(-1) - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


# ---------------------------------------------------------------- loss aggregation
def _mask_weights(per_token, mask):
    _check_same_shape("per_token", per_token, mask=mask)
    if per_token.ndim < 1:
        raise ValueError("per_token must have shape (..., T); got a scalar")
    if _is_torch(per_token):
        return per_token, mask.to(per_token.dtype)
    return np.asarray(per_token, dtype=np.float64), np.asarray(mask, dtype=np.float64)


def sequence_mean(per_token, mask):
    """Mean over each sequence's tokens, then over sequences (GRPO as in DeepSeekMath, eq. 3).

        loss = (1/B') sum_i (1/|o_i|) sum_{t in o_i} l_{i,t}

    per_token: (..., T); mask: (..., T), 1 for completion tokens. Every sequence weighs the
    same however long it is, so each token of a long completion weighs less than a token of
    a short one. Sequences without any token are left out (B' counts the others).
    Returns a scalar (0-d tensor for torch input).

    >>> sequence_mean(np.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]]), np.array([[1, 1, 1, 1], [1, 0, 0, 0]]))
    2.5
    """
    x, w = _mask_weights(per_token, mask)
    count = w.sum(-1)  # (...,): tokens per sequence
    has_tokens = count > 0
    if not bool(has_tokens.any()):
        raise ValueError("mask must mark at least one token; it is all false")
    if _is_torch(x):
        per_seq = (x * w).sum(-1) / count.clamp(min=1)
        return per_seq[has_tokens].mean()
    per_seq = (x * w).sum(-1) / np.maximum(count, 1)
    return float(per_seq[has_tokens].mean())


def token_mean(per_token, mask):
    """Mean over all completion tokens of the batch (DAPO, Yu et al. 2025).

        loss = sum_{i,t} l_{i,t} / sum_i |o_i|

    per_token, mask: (..., T). Every token weighs the same, so long completions count more.
    Returns a scalar.

    >>> token_mean(np.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]]), np.array([[1, 1, 1, 1], [1, 0, 0, 0]]))
    1.6
    """
    x, w = _mask_weights(per_token, mask)
    return masked_mean(x, w)


def dr_grpo_sum(per_token, mask, max_len: int):
    """Sum over completion tokens divided by B * max_len (Dr. GRPO, Liu et al. 2025).

        loss = sum_{i,t} l_{i,t} / (B * max_len)

    per_token, mask: (..., T) with B = the number of sequences (the product of the leading
    axes); max_len: the generation budget (a constant >= T), so the weight of a token depends
    neither on its own sequence's length nor on the batch's. Returns a scalar.

    >>> dr_grpo_sum(np.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]]), np.array([[1, 1, 1, 1], [1, 0, 0, 0]]), max_len=4)
    1.0
    """
    x, w = _mask_weights(per_token, mask)
    if not isinstance(max_len, (int, np.integer)) or isinstance(max_len, bool) or max_len < x.shape[-1]:
        raise ValueError(f"max_len must be an int >= the token axis T = {x.shape[-1]} (the generation budget); got {max_len!r}")
    B = x.size // x.shape[-1] if not _is_torch(x) else x.numel() // x.shape[-1]
    total = (x * w).sum() / (B * max_len)
    return total if _is_torch(x) else float(total)


# ---------------------------------------------------------------- the GRPO loss
def grpo_loss(logp, old_logp, ref_logp, advantages, mask, eps: float = 0.2, beta: float = 0.04,
              aggregate: Callable = sequence_mean):
    """GRPO's loss: minus [clipped surrogate - beta * k3 KL to the reference], reduced by ``aggregate``.

        r_t = exp(logp_t - old_logp_t)
        l_t = -( min(r_t A, clip(r_t, 1 - eps, 1 + eps) A) - beta * k3_t ),
        k3_t = exp(ref_logp_t - logp_t) - (ref_logp_t - logp_t) - 1

    logp: (B, T) log pi_theta of the sampled completion tokens, carrying the gradient;
    old_logp: (B, T) the same under the policy that sampled them; ref_logp: (B, T) under
    the frozen reference (may be None when beta = 0); advantages: (B,) one per completion
    (spread over its tokens) or (B, T); mask: (B, T), 1 for completion tokens.
    aggregate: ``sequence_mean`` (DeepSeekMath), ``token_mean`` (DAPO) or
    ``functools.partial(dr_grpo_sum, max_len=...)`` (Dr. GRPO).
    old_logp, ref_logp and advantages are constants of the update (detached here).

    Returns (loss, stats): a 0-d tensor to minimise, and floats "kl" (token mean of k3),
    "clip_fraction" (share of tokens whose clipped term is the active one) and
    "ratio" (token mean of r_t).

    Worked example: one token, logp = old_logp = ref_logp, A = 2: r = 1, k3 = 0, loss = -2.
    """
    if not _is_torch(logp):
        raise ValueError("logp must be a torch tensor (the loss is back-propagated)")
    beta, eps = float(beta), float(eps)
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0; got {beta}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (the clip range is [1 - eps, 1 + eps]); got {eps}")
    if logp.dim() != 2:
        raise ValueError(f"logp must have shape (B, T); got {tuple(logp.shape)}")
    _check_same_shape("logp", logp, old_logp=old_logp, mask=mask, ref_logp=ref_logp)
    if ref_logp is None and beta > 0:
        raise ValueError("ref_logp is needed when beta > 0 (the KL term compares with the reference)")
    advantages = torch.as_tensor(advantages, dtype=logp.dtype, device=logp.device).detach()
    if advantages.shape == logp.shape[:1]:
        advantages = advantages[:, None].expand_as(logp)  # (B, T): every token of a completion shares its A
    elif advantages.shape != logp.shape:
        raise ValueError(f"advantages must have shape (B,) = {tuple(logp.shape[:1])} or (B, T) = {tuple(logp.shape)}; got {tuple(advantages.shape)}")
    ratio = (logp - old_logp.detach()).exp()
    objective = ppo_clip_objective(ratio, advantages, eps)  # (B, T)
    per_token = -objective
    kl = None
    if ref_logp is not None:
        kl = kl_k3(logp, ref_logp.detach())  # (B, T); gradient flows through logp only
        if beta > 0:
            per_token = per_token + beta * kl
    loss = aggregate(per_token, mask)
    with torch.no_grad():
        m = mask.bool()
        clipped = (objective != ratio * advantages) & m
        stats = {
            "kl": float(masked_mean(kl, m)) if kl is not None else float("nan"),
            "clip_fraction": float(clipped.sum()) / max(int(m.sum()), 1),
            "ratio": float(masked_mean(ratio, m)),
        }
    return loss, stats


# ---------------------------------------------------------------- one batch of groups
@dataclass
class GRPOConfig:
    """One GRPO run on the small GPT-2. Kernels take explicit scalars; this is for the loop."""

    steps: int = 300  # policy updates; each samples a fresh batch of groups
    prompts_per_step: int = 32  # distinct prompts per step
    group_size: int = 16  # G: completions sampled per prompt (batch B = prompts_per_step * G)
    max_new_tokens: int = 5  # completion budget: the longest sum (max_digits + 1 digits) and <eos>
    temperature: float = 1.0  # sampling temperature (log-probs are taken at the same temperature)
    epochs: int = 1  # mu in DeepSeekMath: gradient passes over each batch (> 1 makes the clip matter)
    minibatches: int = 1  # minibatches per pass, split by whole groups
    lr: float = 1e-4  # Adam learning rate: small, as the base model knows the answers and only has to choose them
    eps: float = 0.2  # clip range of the ratio, [1 - eps, 1 + eps]
    beta: float = 0.01  # weight of the k3 KL to the reference in the loss (0: no reference pass)
    scale_rewards: bool = True  # divide by the group std (DeepSeekMath) or only centre (Dr. GRPO)
    adv_eps: float = 1e-4  # added to the group std, so an all-equal group gets A = 0
    grad_clip: float = 1.0  # clip the gradient's global norm to this
    seed: int = 0  # seeds sampling and the prompt stream

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "epochs", "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.prompts_per_step % self.minibatches:
            raise ValueError(f"prompts_per_step ({self.prompts_per_step}) must be divisible by minibatches ({self.minibatches})")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (the log-probs divide by it); got {self.temperature}")


def grpo_config(fast: bool | None = None) -> GRPOConfig:
    """The course's GRPO run on the sums: the full budget, or a small one in fast mode."""
    fast = FAST if fast is None else fast
    if fast:  # the FAST base model (1-2 digit sums): fewer, cheaper steps on a smaller model
        return GRPOConfig(steps=200, max_new_tokens=4, lr=3e-4)
    return GRPOConfig()


@dataclass
class GroupBatch:
    """One batch of sampled groups: everything an update needs, as tensors (B = n_prompts * G)."""

    prompts: list[str]  # B prompts, each repeated G times in a row
    completions: list[str]  # B decoded completions
    ids: torch.Tensor  # (B, P + T) left-padded prompt then completion tokens
    attention_mask: torch.Tensor  # (B, P + T) 1 for real tokens
    completion_mask: torch.Tensor  # (B, T) 1 for completion tokens (EOS included)
    rewards: torch.Tensor  # (B,) from the reward function
    advantages: torch.Tensor  # (B,) group-standardised
    old_logp: torch.Tensor | None  # (B, T) log-probs under the sampling policy (None: equal to the first pass's)
    ref_logp: torch.Tensor | None  # (B, T) under the reference (None when beta = 0)
    prompt_ids: torch.Tensor  # (n_prompts, P) each prompt once, left-padded (ids repeats them G times)
    prompt_mask: torch.Tensor  # (n_prompts, P) 1 for real tokens


def completion_logprobs(model: GPT, ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int,
                        temperature: float = 1.0, return_entropy: bool = False):
    """log pi(token) of the last ``n_completion`` tokens of each row, shape (B, T); optionally entropy (B, T).

    ids, attention_mask: (B, P + T), prompt left-padded, completion right-padded. The logits
    at position P + t - 1 score completion token t; they are divided by ``temperature`` so
    the log-probs are those of the distribution the tokens were sampled from.
    """
    T = n_completion
    h = model.hidden_states(ids, attention_mask)[:, -T - 1 : -1]  # (B, T, C): the positions that score the completion
    logits = model.lm_head(h) / temperature  # (B, T, V)
    logp = token_logprobs(logits, ids[:, -T:])
    if return_entropy:
        with torch.no_grad():
            return logp, entropy_from_logits(logits)
    return logp


def _group_rows(groups: torch.Tensor, group_size: int) -> torch.Tensor:
    """The batch rows of whole groups: group g holds rows g * G ... g * G + G - 1 (groups are contiguous)."""
    return (groups[:, None] * group_size + torch.arange(group_size)).reshape(-1)


def group_logprobs(model: GPT, batch: GroupBatch, temperature: float = 1.0, return_entropy: bool = False,
                   groups: torch.Tensor | None = None):
    """``completion_logprobs`` of a batch of groups, (B, T), with each prompt run once, not G times.

    The G completions of a prompt share it, so its hidden states are the same in all G rows:
    ``GPT.shared_prompt_states`` computes them once and lets every completion attend to
    them (forward and backward). With P prompt tokens and T completion tokens this runs
    n_prompts * P + B * (T - 1) tokens through the network instead of B * (P + T); for the
    course's sums (P = 8, T = 5, G = 16) about a third. ``groups``: indices of the groups
    to score (a minibatch), all by default. Same values as ``completion_logprobs`` on
    ``batch.ids`` up to rounding (a test checks values and gradients).
    """
    T = batch.completion_mask.shape[1]
    G = batch.ids.shape[0] // batch.prompt_ids.shape[0]
    prompt_ids, prompt_mask, completions = batch.prompt_ids, batch.prompt_mask, batch.ids[:, -T:]
    if groups is not None:
        rows = _group_rows(groups, G)
        prompt_ids, prompt_mask, completions = prompt_ids[groups], prompt_mask[groups], completions[rows]
    last, states = model.shared_prompt_states(prompt_ids, prompt_mask, completions[:, :-1], G)
    # The prompt's last token scores each completion's first token; token t - 1 scores token t.
    h = torch.cat([last.repeat_interleave(G, dim=0)[:, None], states], dim=1)  # (B, T, C)
    logits = model.lm_head(h) / temperature
    logp = token_logprobs(logits, completions)
    if return_entropy:
        with torch.no_grad():
            return logp, entropy_from_logits(logits)
    return logp


@torch.no_grad()
def sample_groups(policy: GPT, reference: GPT | None, reward_fn, prompts: Sequence[str], config: GRPOConfig,
                  tokenizer: CharTokenizer, generator: torch.Generator | None = None) -> GroupBatch:
    """Sample G completions for each prompt, score them, and compute advantages and fixed log-probs."""
    G = config.group_size
    repeated = [p for p in prompts for _ in range(G)]  # groups contiguous
    unique_ids, unique_mask = left_pad([tokenizer.encode(p) for p in prompts], tokenizer.pad_id)
    completions, completion_mask = generate(policy, unique_ids, config.max_new_tokens, temperature=config.temperature,
                                            eos_id=tokenizer.eos_id, generator=generator, attention_mask=unique_mask,
                                            pad_id=tokenizer.pad_id, num_samples=G)  # each prompt's prefill runs once
    completions, completion_mask = completions.clone(), completion_mask.clone()  # plain tensors, not inference-mode ones
    texts = tokenizer.decode_batch(completions, completion_mask)
    rewards = torch.as_tensor(reward_fn(repeated, texts), dtype=torch.float32).reshape(-1)
    if rewards.shape != (len(repeated),):
        raise ValueError(f"reward_fn must return one reward per completion ({len(repeated)}); got shape {tuple(rewards.shape)}")
    advantages = group_advantages(rewards, G, scale=config.scale_rewards, eps=config.adv_eps)
    ids = torch.cat([unique_ids.repeat_interleave(G, dim=0), completions], dim=1)  # (B, P + T)
    mask = torch.cat([unique_mask.repeat_interleave(G, dim=0), completion_mask], dim=1)
    batch = GroupBatch(repeated, texts, ids, mask, completion_mask, rewards, advantages, None, None, unique_ids, unique_mask)
    # With one pass of one minibatch the update starts from the sampling policy itself, so the
    # old log-probs equal the first forward pass's (detached): no extra pass needed.
    if not (config.epochs == 1 and config.minibatches == 1):
        batch.old_logp = group_logprobs(policy, batch, config.temperature)
    if reference is not None and config.beta > 0:
        batch.ref_logp = group_logprobs(reference, batch, config.temperature)
    return batch


def grpo_update(policy: GPT, optimizer: torch.optim.Optimizer, batch: GroupBatch, config: GRPOConfig) -> dict:
    """``config.epochs`` passes of ``config.minibatches`` gradient steps on one batch; mean stats."""
    B = len(batch.prompts)
    n_groups = B // config.group_size
    per_mb = n_groups // config.minibatches
    sums = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "ratio": 0.0, "grad_norm": 0.0, "entropy": 0.0}
    n = 0
    policy.train()
    for _ in range(config.epochs):
        order = torch.randperm(n_groups) if config.minibatches > 1 else torch.arange(n_groups)
        for k in range(config.minibatches):
            groups = order[k * per_mb : (k + 1) * per_mb]
            rows = _group_rows(groups, config.group_size)
            logp, entropy = group_logprobs(policy, batch, config.temperature, return_entropy=True, groups=groups)
            mask = batch.completion_mask[rows]
            ref = batch.ref_logp[rows] if batch.ref_logp is not None else None
            old = batch.old_logp[rows] if batch.old_logp is not None else logp.detach()
            loss, stats = grpo_loss(logp, old, ref, batch.advantages[rows], mask,
                                    eps=config.eps, beta=config.beta if ref is not None else 0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            stats |= {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "entropy": float(masked_mean(entropy, mask.bool()))}
            for key in sums:
                sums[key] += stats[key]
            n += 1
    policy.eval()
    return {key: value / n for key, value in sums.items()}


def grpo_step(policy: GPT, reference: GPT | None, optimizer: torch.optim.Optimizer, reward_fn, prompts: Sequence[str],
              config: GRPOConfig, tokenizer: CharTokenizer | None = None,
              generator: torch.Generator | None = None) -> tuple[GroupBatch, dict]:
    """One GRPO step: sample and score groups for ``prompts``, then update the policy on them.

    Returns the batch and a dict of floats: the update's stats plus "reward" (mean),
    "zero_adv_fraction" (share of groups with all-equal rewards) and "completion_length"
    (mean tokens per completion, EOS included).
    """
    tokenizer = tokenizer or CharTokenizer()
    batch = sample_groups(policy, reference, reward_fn, prompts, config, tokenizer, generator)
    stats = grpo_update(policy, optimizer, batch, config)
    stats["reward"] = float(batch.rewards.mean())
    stats["zero_adv_fraction"] = float(all_equal_groups(batch.rewards, config.group_size).float().mean())
    stats["completion_length"] = float(batch.completion_mask.sum(1).float().mean())
    return batch, stats


def train_grpo(policy: GPT, reference: GPT | None, reward_fn, prompts_fn, config: GRPOConfig,
               callback: Callable | None = None, progress: bool = True, tokenizer: CharTokenizer | None = None) -> dict:
    """Train ``policy`` in place with GRPO for ``config.steps`` steps; return the history.

    reward_fn(prompts, completions) -> (B,) rewards (tensor or array); prompts_fn(step, rng) ->
    list of ``config.prompts_per_step`` prompts; reference: the frozen model of the KL term
    (None, or beta = 0, skips it). callback(step, history) runs after every step (live plots,
    evaluation). history: per-step lists "reward", "kl", "entropy", "clip_fraction", "loss",
    "ratio", "grad_norm", "zero_adv_fraction", "completion_length", "seconds" (wall time of the
    step) and "cpu_seconds" (this process's CPU time for the step), as in ``train_rlhf``.
    """
    from tqdm.auto import tqdm

    tokenizer = tokenizer or CharTokenizer()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if reference is not None:
        reference.eval()
        for p in reference.parameters():
            p.requires_grad_(False)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, fused=True)  # one kernel for all weights
    keys = ("reward", "kl", "entropy", "clip_fraction", "loss", "ratio", "grad_norm", "zero_adv_fraction", "completion_length")
    history = {key: [] for key in keys} | {"seconds": [], "cpu_seconds": []}
    bar = tqdm(range(config.steps), desc="GRPO", disable=not progress, mininterval=1.0)
    for step in bar:
        start, cpu_start = time.perf_counter(), time.process_time()
        prompts = prompts_fn(step, rng)
        if len(prompts) != config.prompts_per_step:
            raise ValueError(f"prompts_fn must return config.prompts_per_step = {config.prompts_per_step} prompts; got {len(prompts)}")
        _, stats = grpo_step(policy, reference, optimizer, reward_fn, prompts, config, tokenizer, generator)
        for key in keys:
            history[key].append(stats[key])
        history["seconds"].append(time.perf_counter() - start)
        history["cpu_seconds"].append(time.process_time() - cpu_start)
        bar.set_postfix(reward=f"{stats['reward']:.2f}", kl=f"{stats['kl']:.3f}")
        if callback is not None:
            callback(step, history)
    return history


def verifier_reward_fn(task) -> Callable[[list[str], list[str]], torch.Tensor]:
    """Wrap a task's verifier (``task.reward`` -> numpy (B,)) as a reward_fn returning float32 torch (B,)."""

    def reward_fn(prompts, completions):
        return torch.as_tensor(np.asarray(task.reward(prompts, completions)), dtype=torch.float32)

    return reward_fn


def frozen_copy(model: GPT) -> GPT:
    """A deep copy of ``model`` in eval mode with gradients off: the reference pi_ref."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref

