"""RLHF with PPO on a language model (chapter 12): the kernels, one PPO step, and the loop.

PPO for a language model keeps four models (Ouyang et al. 2022, InstructGPT; Ziegler et al.
2019, "Fine-Tuning Language Models from Human Preferences"):

* the **actor** pi_theta, the policy being trained;
* the **reference** pi_ref, a frozen copy of the starting policy, which the KL penalty
  keeps the actor close to;
* the **reward model** (or a verifier), frozen, which scores each finished completion;
* the **critic** V, a GPT with a value head, which predicts the return from each partial
  completion and is trained alongside the actor.

One step of ``ppo_step`` runs the five stages: (1) generate completions, (2) score them,
(3) compute per-token rewards and advantages, (4) optimise the policy, (5) update the critic.

The token-level MDP: the state s_t is the prompt plus the completion tokens a_0 .. a_{t-1},
the action is the token a_t. The per-token reward is

    r_t = -beta * (log pi_old(a_t|s_t) - log pi_ref(a_t|s_t))  +  [t is the last token] * score

and the advantages are GAE over the completion tokens only, with the last real token ending
the episode (padding after <eos> gets no reward and does not bootstrap).

Letters in shapes: B completions in a batch, P prompt tokens (left-padded), T completion
tokens (right-padded), V vocabulary. Time is the last axis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .config import FAST
from .gpt import GPT, entropy_from_logits, generate, token_logprobs
from .losses import masked_mean, ppo_clip_loss
from .ppo import approx_kl, clip_fraction, explained_variance, minibatch_indices
from .returns import gae
from .tokenizer import CharTokenizer

__all__ = [
    "last_token_mask",
    "kl_penalty_rewards",
    "sequence_kl",
    "masked_whiten",
    "clipped_value_loss",
    "AdaptiveKLController",
    "RLHFConfig",
    "rlhf_config",
    "Rollout",
    "RLHFState",
    "make_state",
    "generate_rollout",
    "completion_logprobs_and_entropy",
    "completion_values",
    "token_advantages",
    "ppo_update",
    "ppo_step",
    "train_rlhf",
    "torch_reward_fn",
]


# ---------------------------------------------------------------- kernels
def _check_torch(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch tensor; got {type(x).__name__}")


def _check_2d_same(reference_name: str, reference, **others) -> None:
    _check_torch(reference_name, reference)
    if reference.dim() != 2:
        raise ValueError(f"{reference_name} must have shape (B, T); got {tuple(reference.shape)}")
    for name, value in others.items():
        _check_torch(name, value)
        if value.shape != reference.shape:
            raise ValueError(f"{name} must have the shape of {reference_name} {tuple(reference.shape)}; got {tuple(value.shape)}")


def last_token_mask(completion_mask: torch.Tensor) -> torch.Tensor:
    """True at each row's last real completion token, shape (B, T) bool (an all-padding row has none).

    completion_mask: (B, T), 1 for generated tokens (the <eos> included), 0 for padding.
    Written as "real here and not real at t + 1", so it is right for any right-padded mask.

    Example: [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
          -> [[F, F, T, F], [T, F, F, F], [F, F, F, F]].
    """
    _check_torch("completion_mask", completion_mask)
    if completion_mask.dim() != 2:
        raise ValueError(f"completion_mask must have shape (B, T); got {tuple(completion_mask.shape)}")
    real = completion_mask.bool()
    after = torch.nn.functional.pad(real[:, 1:], (0, 1), value=False)  # (B, T): is token t + 1 real?
    return real & ~after


def kl_penalty_rewards(logp: torch.Tensor, ref_logp: torch.Tensor, scores: torch.Tensor,
                       completion_mask: torch.Tensor, beta: float) -> torch.Tensor:
    """The per-token reward of RLHF: a KL penalty on every token, the score on the last one.

        r_t = -beta * (log pi(a_t|s_t) - log pi_ref(a_t|s_t)) * m_t  +  score * [t = last real token]

    (Ziegler et al. 2019, eq. 2; Ouyang et al. 2022, eq. 2, spread over tokens.) Summed over a
    completion, the penalty is -beta times the sampled estimate of KL(pi || pi_ref) for that
    sequence. logp: log-probs of the sampled tokens under the policy that sampled them (the
    rollout's "old" policy, detached); ref_logp: the same tokens under the frozen reference;
    both (B, T). scores: (B,), one reward-model score per completion. completion_mask: (B, T),
    1 for real tokens; padding gets 0 (no penalty, no score). beta >= 0. Returns (B, T).

    Example: logp [[-1, -2, 0]], ref_logp [[-1.5, -1, 0]], mask [[1, 1, 0]], score [3], beta 0.1
    -> [[-0.05, 0.1 + 3, 0]] = [[-0.05, 3.1, 0]].
    """
    _check_2d_same("logp", logp, ref_logp=ref_logp, completion_mask=completion_mask)
    _check_torch("scores", scores)
    if scores.shape != (logp.shape[0],):
        raise ValueError(f"scores must have shape (B,) = ({logp.shape[0]},), one per completion; got {tuple(scores.shape)}")
    beta = float(beta)
    if not (beta >= 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number >= 0; got {beta}")
    m = completion_mask.to(logp.dtype)
    kl = (logp - ref_logp) * m  # (B, T): log pi - log pi_ref on real tokens only
    last = last_token_mask(completion_mask).to(logp.dtype)  # (B, T): one 1 per non-empty row
    return -beta * kl + scores.to(logp.dtype)[:, None] * last


def sequence_kl(logp: torch.Tensor, ref_logp: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Sampled estimate of KL(pi || pi_ref) per completion: sum_t (log pi - log pi_ref) m_t, shape (B,).

    The tokens were drawn from pi, so the sum over a completion is an unbiased estimate of the
    KL between the two distributions over whole completions (Schulman's "k1"); single samples
    can be negative. Example: logp [[-1, -2]], ref_logp [[-1.5, -1]], mask [[1, 1]] -> [-0.5].
    """
    _check_2d_same("logp", logp, ref_logp=ref_logp, completion_mask=completion_mask)
    return ((logp - ref_logp) * completion_mask.to(logp.dtype)).sum(dim=-1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Standardise ``x`` with the mean and variance of its real entries: (x - mu) / sqrt(var + eps).

        mu = sum(x m) / sum(m),   var = sum((x - mu)^2 m) / sum(m)

    With ``shift_mean=False`` the mean is added back: the entries are rescaled to unit variance
    but keep their mean (as TRL does for rewards). Entries where mask is 0 come back as 0, so a
    padded position can never leak into a loss. x, mask: same shape, any; returns x's shape.
    Used on the advantages of a whole rollout, once, before the PPO epochs.

    Example: x [1, 3, 100], mask [1, 1, 0] -> [-1, 1, 0] (mu 2, var 1; up to eps).
    """
    _check_torch("x", x)
    _check_torch("mask", mask)
    if mask.shape != x.shape:
        raise ValueError(f"mask must have the shape of x {tuple(x.shape)}; got {tuple(mask.shape)}")
    m = mask.to(x.dtype)
    n = m.sum()
    if float(n) <= 0:
        raise ValueError("mask must mark at least one entry as real; it is all 0")
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / n
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * m


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, clip: float) -> torch.Tensor:
    """PPO's clipped value loss, averaged over the real tokens (a scalar).

        V_clip = V_old + clip(V - V_old, -c, c)
        loss   = 1/2 * mean_{m_t = 1} max((V - R)^2, (V_clip - R)^2)

    The critic may not move its prediction more than c away from the rollout's V_old in one
    rollout's worth of updates, in the spirit of the policy's clipped ratio (Schulman et al.
    2017's baselines code; TRL's PPO ``vf_coef`` loss). values: (B, T) from the critic being
    trained (carries the gradient); old_values: (B, T) from the rollout; returns: (B, T), the
    targets R = A + V_old; mask: (B, T). clip > 0. old_values and returns are detached here.

    Example: V [2.0], V_old [0.0], R [3.0], c 0.5 -> V_clip 0.5, max(1, 6.25) / 2 = 3.125.
    """
    _check_2d_same("values", values, old_values=old_values, returns=returns, mask=mask)
    clip = float(clip)
    if not (clip > 0 and math.isfinite(clip)):
        raise ValueError(f"clip must be a finite number > 0; got {clip}")
    old_values, returns = old_values.detach(), returns.detach()
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    worst = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)  # (B, T): the pessimistic loss
    return 0.5 * masked_mean(worst, mask)


class AdaptiveKLController:
    """The KL coefficient beta of Ziegler et al. (2019, sec. 2.2), steered towards a target KL.

        e     = clip(KL / KL_target - 1, -0.2, 0.2)
        beta <- beta * (1 + e * n_steps / horizon)

    KL is the measured KL(pi || pi_ref) per completion (nats), n_steps the number of
    completions it was measured on, horizon how many completions it takes to correct the
    error fully. Unlike PPO's halving/doubling (``course_lib.losses.adaptive_kl_beta``) the
    change is proportional and small, so beta drifts smoothly. ``target=None`` keeps beta fixed.

    >>> ctl = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    >>> ctl.update(kl=12.0, n_steps=100); round(ctl.value, 4)   # e = +0.2 -> beta * 1.02
    0.102
    """

    def __init__(self, init_kl_coef: float, target: float | None = 6.0, horizon: int = 10_000):
        init_kl_coef = float(init_kl_coef)
        if not (init_kl_coef >= 0 and math.isfinite(init_kl_coef)):
            raise ValueError(f"init_kl_coef must be a finite number >= 0; got {init_kl_coef}")
        if target is not None and not (float(target) > 0 and math.isfinite(float(target))):
            raise ValueError(f"target must be a finite KL > 0, or None for a fixed coefficient; got {target}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0; got {horizon}")
        self.value = init_kl_coef
        self.target = None if target is None else float(target)
        self.horizon = horizon

    def update(self, kl: float, n_steps: int) -> float:
        """Move beta after a rollout whose mean KL per completion was ``kl``; returns the new beta."""
        kl = float(kl)
        if not math.isfinite(kl):
            raise ValueError(f"kl must be finite; got {kl}")
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0; got {n_steps}")
        if self.target is None:
            return self.value
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


# ---------------------------------------------------------------- the run's settings
@dataclass
class RLHFConfig:
    """One RLHF-PPO run. Defaults: the full setting on the review task (``rlhf_config``)."""

    steps: int = 100  # PPO steps: each generates, scores and trains on one rollout
    batch_size: int = 64  # prompts per rollout (one completion each)
    max_new_tokens: int = 30  # longest completion, in tokens; prompt + completion must fit the block
    temperature: float = 1.0  # sampling temperature of the rollouts (log-probs use the same one)
    epochs: int = 4  # passes of PPO over each rollout
    minibatches: int = 4  # minibatches per epoch; must divide batch_size
    clip_eps: float = 0.2  # epsilon of the clipped ratio [1 - eps, 1 + eps]
    value_clip: float = 0.2  # how far one rollout may move the critic's prediction (clipped value loss)
    gamma: float = 1.0  # discount over tokens: the score at the end counts fully for every token
    lam: float = 0.95  # GAE lambda over tokens
    kl_coef: float = 0.05  # initial beta of the per-token KL penalty -beta (log pi - log pi_ref)
    kl_target: float | None = 4.0  # KL per completion (nats) the adaptive controller steers to; None keeps beta fixed
    kl_horizon: int = 1_000  # completions the controller takes to correct a KL error fully (Ziegler et al.)
    entropy_coef: float = 0.0  # weight of the entropy bonus in the policy loss
    lr: float = 1e-4  # Adam learning rate of the policy (3e-4 made the full model unstable: reward collapses)
    critic_lr: float = 1e-3  # Adam learning rate of the critic
    max_grad_norm: float = 1.0  # clip each model's gradient to this global norm (math.inf: no clipping)
    whiten_advantages: bool = True  # standardise the rollout's advantages over its real tokens
    torch_threads: int | None = None  # torch threads during the run (None: leave as is)
    seed: int = 0  # seeds sampling and minibatch order

    def __post_init__(self):
        for name in ("steps", "batch_size", "max_new_tokens", "epochs", "minibatches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.batch_size % self.minibatches:
            raise ValueError(f"minibatches ({self.minibatches}) must divide batch_size ({self.batch_size})")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"gamma and lam must lie in [0, 1]; got {self.gamma} and {self.lam}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 (math.inf for no clipping); got {self.max_grad_norm}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (PPO needs the log-probs of a proper distribution); got {self.temperature}")


def rlhf_config(fast: bool | None = None, **overrides) -> RLHFConfig:
    """The course's RLHF run on the reviews: the full setting, or a small budget when fast."""
    fast = FAST if fast is None else fast
    # kl_coef 0.2 rather than the class's 0.05: with 0.05 the policy drifted to KL 10-40 nats within
    # a few steps, into texts the reward model scores too high and the labeler calls malformed.
    base = RLHFConfig(steps=40, batch_size=32, lr=3e-4, kl_coef=0.2) if fast else RLHFConfig(kl_coef=0.2)
    return RLHFConfig(**(asdict(base) | overrides))


# ---------------------------------------------------------------- the five stages
@dataclass
class Rollout:
    """A batch of prompts, the completions the policy sampled for them, and what PPO needs.

    Filled in stage by stage: ``generate_rollout`` sets the first block and ``old_logp`` and
    ``entropy`` (the sampler records log pi_old of each token it draws), ``token_advantages``
    the rest.
    """

    prompts: list  # B prompt strings
    completions: list  # B completion strings (the text before <eos>)
    ids: torch.Tensor  # (B, P + T): left-padded prompt, then the right-padded completion
    attention_mask: torch.Tensor  # (B, P + T): 1 for real tokens
    completion_mask: torch.Tensor  # (B, T): 1 for sampled tokens, <eos> included
    prompt_length: int  # P
    scores: torch.Tensor | None = None  # (B,): the reward model's score of each completion
    old_logp: torch.Tensor | None = None  # (B, T): log pi_old(a_t|s_t) recorded while sampling, 0 on padding
    ref_logp: torch.Tensor | None = None  # (B, T): log pi_ref(a_t|s_t)
    old_values: torch.Tensor | None = None  # (B, T): V(s_t) from the critic before the update
    rewards: torch.Tensor | None = None  # (B, T): the KL-shaped per-token rewards
    advantages: torch.Tensor | None = None  # (B, T): GAE, whitened if configured; 0 on padding
    returns: torch.Tensor | None = None  # (B, T): A + V_old (before whitening), the critic's targets
    entropy: torch.Tensor | None = None  # (B, T): entropy of pi_old at each state, 0 on padding


@dataclass
class RLHFState:
    """What persists between PPO steps: the optimisers, the KL controller and the random streams."""

    policy_optimizer: torch.optim.Optimizer
    critic_optimizer: torch.optim.Optimizer
    kl_controller: AdaptiveKLController
    generator: torch.Generator  # sampling and minibatch shuffles
    tokenizer: CharTokenizer = field(default_factory=CharTokenizer)


def make_state(policy: GPT, critic: GPT, config: RLHFConfig, tokenizer: CharTokenizer | None = None) -> RLHFState:
    """Fresh Adam optimisers for actor and critic, a KL controller at ``kl_coef``, a seeded generator."""
    return RLHFState(
        # fused: one kernel updates every weight, rather than a loop of small ops per tensor
        policy_optimizer=torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5, fused=True),
        critic_optimizer=torch.optim.Adam(critic.parameters(), lr=config.critic_lr, eps=1e-5, fused=True),
        kl_controller=AdaptiveKLController(config.kl_coef, config.kl_target, config.kl_horizon),
        generator=torch.Generator().manual_seed(config.seed),
        tokenizer=tokenizer or CharTokenizer(),
    )


def generate_rollout(policy: GPT, prompts: list, config: RLHFConfig, generator: torch.Generator | None = None,
                     tokenizer: CharTokenizer | None = None) -> Rollout:
    """Stage 1: sample one completion per prompt with the current policy (no gradient).

    The rollout also holds log pi_old of each sampled token and the entropy of pi_old, from
    the logits the sampler drew from: the policy is not run over the completions again.
    """
    tokenizer = tokenizer or CharTokenizer()
    prompt_ids, prompt_mask = tokenizer.encode_batch(prompts)  # (B, P), left-padded
    completions, completion_mask, logp, entropy = generate(
        policy, prompt_ids, config.max_new_tokens, temperature=config.temperature, eos_id=tokenizer.eos_id,
        generator=generator, attention_mask=prompt_mask, pad_id=tokenizer.pad_id, return_logprobs=True)  # (B, T) each
    return Rollout(
        prompts=list(prompts),
        completions=tokenizer.decode_batch(completions, completion_mask),
        ids=torch.cat([prompt_ids, completions], dim=1),
        attention_mask=torch.cat([prompt_mask, completion_mask], dim=1),
        completion_mask=completion_mask,
        prompt_length=prompt_ids.shape[1],
        old_logp=logp.clone(),  # clone: a normal tensor, usable in the update's autograd graph
        entropy=entropy.clone(),
    )


def completion_logprobs_and_entropy(model: GPT, ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int,
                                    temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a_t|s_t) of the completion tokens and the entropy of pi(.|s_t), both (B, T).

    ids, attention_mask: (B, P + T). The logits at position P - 1 + t score completion token t
    (the last prompt token is in column P - 1 because prompts are left-padded). Padding
    entries are not zeroed here: every user masks them.
    """
    # skip_padding: the padding of the prompts and of the finished completions costs nothing.
    # keep_last: the last block runs only where the completion is scored (columns P - 1 on).
    T = ids.shape[1] - prompt_length
    logits = model(ids, attention_mask=attention_mask, skip_padding=True, keep_last=T + 1)[:, :-1] / temperature  # (B, T, V)
    return token_logprobs(logits, ids[:, prompt_length:]), entropy_from_logits(logits)


def completion_values(critic: GPT, ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """V(s_t) for the state before each completion token, (B, T): the value head at position P - 1 + t."""
    T = ids.shape[1] - prompt_length
    return critic.values(ids, attention_mask=attention_mask, skip_padding=True, keep_last=T + 1)[:, :-1]


def token_advantages(rewards: torch.Tensor, values: torch.Tensor, completion_mask: torch.Tensor,
                     gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the completion tokens: (advantages, returns), both (B, T), 0 on padding.

    The episode ends at each row's last real token: it is marked done, so its TD error is
    r_T - V(s_T) with nothing bootstrapped, and nothing after it (padding, with reward 0 and
    value 0) reaches back into the advantages of the real tokens. returns = A + V are the
    critic's targets.
    """
    _check_2d_same("rewards", rewards, values=values, completion_mask=completion_mask)
    m = completion_mask.to(rewards.dtype)
    v = values * m  # padding has no state worth a value
    v_next = torch.nn.functional.pad(v, (0, 1))  # (B, T + 1): the state after the last token is worth 0
    advantages = gae(rewards * m, v_next, gamma, lam, dones=last_token_mask(completion_mask)) * m
    return advantages, (advantages + v) * m


def ppo_update(policy: GPT, critic: GPT, rollout: Rollout, state: RLHFState, config: RLHFConfig) -> dict:
    """Stages 4 and 5: ``epochs`` passes over random minibatches of the rollout.

    Policy: ppo_clip_loss(log pi, old log pi, A) - entropy_coef * entropy, over the real
    completion tokens. Critic: clipped_value_loss(V, V_old, returns). Each model has its own
    optimiser and its own gradient clipping; the critic is a separate network, so its loss
    never moves the policy. Returns the mean of each statistic over the minibatches.
    """
    P, mask = rollout.prompt_length, rollout.completion_mask
    stats = {"policy_loss": [], "value_loss": [], "clip_fraction": [], "approx_kl": []}
    clip_gradients = math.isfinite(config.max_grad_norm)  # an infinite norm clips nothing: skip the norms
    policy.train()
    critic.train()
    for _epoch in range(config.epochs):
        for idx in minibatch_indices(len(rollout.prompts), config.minibatches, state.generator):
            ids, att, m = rollout.ids[idx], rollout.attention_mask[idx], mask[idx]
            # 4. optimise the policy
            logp, entropy = completion_logprobs_and_entropy(policy, ids, att, P, config.temperature)
            policy_loss = ppo_clip_loss(logp, rollout.old_logp[idx], rollout.advantages[idx], config.clip_eps, m)
            loss = policy_loss - config.entropy_coef * masked_mean(entropy, m)
            state.policy_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_gradients:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            state.policy_optimizer.step()
            # 5. update the critic
            values = completion_values(critic, ids, att, P)
            value_loss = clipped_value_loss(values, rollout.old_values[idx], rollout.returns[idx], m, config.value_clip)
            state.critic_optimizer.zero_grad(set_to_none=True)
            value_loss.backward()
            if clip_gradients:
                torch.nn.utils.clip_grad_norm_(critic.parameters(), config.max_grad_norm)
            state.critic_optimizer.step()

            stats["policy_loss"].append(policy_loss.item())
            stats["value_loss"].append(value_loss.item())
            stats["clip_fraction"].append(float(clip_fraction(logp.detach(), rollout.old_logp[idx], config.clip_eps, m)))
            stats["approx_kl"].append(float(approx_kl(logp.detach(), rollout.old_logp[idx], m)))
    policy.eval()
    critic.eval()
    return {k: float(np.mean(v)) for k, v in stats.items()}


def ppo_step(policy: GPT, reference: GPT, critic: GPT, reward_fn: Callable, prompts: list, state: RLHFState,
             config: RLHFConfig, metrics_fn: Callable | None = None) -> tuple[dict, Rollout]:
    """One RLHF-PPO step on a batch of prompts, the five stages in order.

    reward_fn(prompts, completions) -> tensor (B,); metrics_fn(prompts, completions), optional,
    returns a dict of extra floats to log (for instance the labeler's true score, when the
    reward is a learned model of it). Returns (stats, rollout): stats holds "reward" (mean
    score), "kl" (mean KL(pi_old || pi_ref) per completion, before the update), "entropy"
    (mean per token), "kl_coef", "length", "clip_fraction", "value_loss", "policy_loss",
    "approx_kl", "explained_variance" and "seconds" (wall time of the step).
    """
    start = time.perf_counter()
    # 1. generate
    rollout = generate_rollout(policy, prompts, config, state.generator, state.tokenizer)
    mask, P = rollout.completion_mask, rollout.prompt_length
    # 2. score
    scores = reward_fn(rollout.prompts, rollout.completions)
    rollout.scores = torch.as_tensor(scores, dtype=torch.float32).detach().reshape(-1)
    # 3. per-token rewards and advantages, all from the models as they were before the update
    #    (log pi_old came with the samples in stage 1)
    with torch.no_grad():
        rollout.ref_logp, _ = completion_logprobs_and_entropy(reference, rollout.ids, rollout.attention_mask, P,
                                                              config.temperature)
        rollout.old_values = completion_values(critic, rollout.ids, rollout.attention_mask, P) * mask
        beta = state.kl_controller.value
        rollout.rewards = kl_penalty_rewards(rollout.old_logp, rollout.ref_logp, rollout.scores, mask, beta)
        advantages, rollout.returns = token_advantages(rollout.rewards, rollout.old_values, mask, config.gamma, config.lam)
        rollout.advantages = masked_whiten(advantages, mask) if config.whiten_advantages else advantages
        kl = float(sequence_kl(rollout.old_logp, rollout.ref_logp, mask).mean())
    # 4 and 5. optimise the policy, update the critic
    update = ppo_update(policy, critic, rollout, state, config)
    state.kl_controller.update(kl, n_steps=len(prompts))

    stats = {
        "reward": float(rollout.scores.mean()),
        "kl": kl,
        "entropy": float(masked_mean(rollout.entropy, mask)),
        "kl_coef": beta,
        "length": float(mask.sum(dim=1).float().mean()),
        "explained_variance": explained_variance(rollout.old_values, rollout.returns, mask),
        **update,
    }
    if metrics_fn is not None:
        stats.update({k: float(v) for k, v in metrics_fn(rollout.prompts, rollout.completions).items()})
    stats["seconds"] = time.perf_counter() - start
    return stats, rollout


def train_rlhf(policy: GPT, reference: GPT, critic: GPT, reward_fn: Callable, prompts_fn: Callable, config: RLHFConfig,
               callback: Callable | None = None, progress: bool = True, metrics_fn: Callable | None = None,
               tokenizer: CharTokenizer | None = None) -> dict:
    """RLHF with PPO: ``config.steps`` calls of ``ppo_step``. Trains ``policy`` and ``critic`` in place.

    reward_fn(prompts, completions) -> tensor (B,) (a reward model, or a verifier wrapped with
    ``torch_reward_fn``); prompts_fn(step, rng) -> list of ``batch_size`` prompts, rng a numpy
    Generator seeded with ``config.seed``. reference stays frozen. callback(step, history), if
    given, runs after every step (live plots). Returns the history: a dict of per-step lists
    with the keys of ``ppo_step``'s stats ("reward", "kl", "entropy", "clip_fraction",
    "value_loss", "seconds", ...) plus "cpu_seconds" (this process's CPU time for the step).
    """
    from tqdm.auto import tqdm

    previous_threads = torch.get_num_threads()
    if config.torch_threads is not None:
        torch.set_num_threads(config.torch_threads)
    try:
        reference.eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        state = make_state(policy, critic, config, tokenizer)
        rng = np.random.default_rng(config.seed)
        history: dict[str, list] = {}
        bar = tqdm(range(config.steps), desc="RLHF-PPO", disable=not progress)
        for step in bar:
            cpu0 = time.process_time()
            stats, _ = ppo_step(policy, reference, critic, reward_fn, prompts_fn(step, rng), state, config, metrics_fn)
            stats["cpu_seconds"] = time.process_time() - cpu0
            for k, v in stats.items():
                history.setdefault(k, []).append(v)
            bar.set_postfix(reward=f"{stats['reward']:+.2f}", kl=f"{stats['kl']:.2f}")
            if callback is not None:
                callback(step, history)
        return history
    finally:
        torch.set_num_threads(previous_threads)


def torch_reward_fn(score_fn: Callable) -> Callable:
    """Wrap a numpy scorer ``score_fn(prompts, completions) -> array (B,)`` (``ReviewTask.reward``,
    ``ArithmeticTask.reward``) into the reward_fn of ``train_rlhf``: float32 tensor (B,)."""

    def reward_fn(prompts, completions):
        return torch.as_tensor(np.asarray(score_fn(prompts, completions), dtype=np.float32))

    return reward_fn
