"""Direct Preference Optimization (Rafailov et al. 2023): preference pairs in, a better policy out, no RL loop.

Chapter 12 fits a reward model to preference pairs, then runs PPO against it
with a KL tie to the reference. DPO notices that the KL-regularised objective

    max_pi  E_{x, y ~ pi} [ r(x, y) ] - beta * KL( pi(.|x) || pi_ref(.|x) )

has the closed-form optimum pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x),
so r(x, y) = beta * log(pi*(y|x) / pi_ref(y|x)) + beta * log Z(x). Put that
*implicit reward* into the Bradley-Terry loss of chapter 11 and Z cancels in
the difference of two completions of the same prompt: the policy is trained
directly on the pairs with ``course_lib.losses.dpo_loss``.

Kernels here (pure functions): ``completion_logprobs`` (the sum of a
completion's token log-probs under a mask) and ``implicit_rewards``. Plumbing:
``pair_batch`` tokenises prompt + completion, ``completion_logps`` runs a
model, ``dpo_step`` is one update, ``train_dpo`` the loop over epochs of the
fixed pairs, ``heldout_report`` the score, KL and length of fresh samples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import FAST
from .gpt import GPT, generate, sequence_logprobs
from .losses import dpo_loss
from .tokenizer import CharTokenizer

__all__ = [
    "kl_optimal_policy",
    "completion_logprobs",
    "implicit_rewards",
    "pair_batch",
    "completion_logps",
    "DPOConfig",
    "dpo_config",
    "dpo_step",
    "train_dpo",
    "sample_completions",
    "heldout_report",
]


# ---------------------------------------------------------------- kernels
def kl_optimal_policy(pi_ref, rewards, beta: float):
    """The maximiser of E_pi[r] - beta * KL(pi || pi_ref) over distributions on a finite set of completions.

        pi*(y) = pi_ref(y) * exp(r(y) / beta) / Z,   Z = sum_y pi_ref(y) * exp(r(y) / beta)

    pi_ref: (..., K) probabilities over K completions (last axis sums to 1); rewards: (..., K);
    beta > 0. Returns (..., K). Computed in log space (a softmax of log pi_ref + r / beta), so a
    small beta does not overflow. Numpy or torch.

    Example: pi_ref [0.5, 0.5], r [0, ln 3], beta 1 give [0.25, 0.75].
    """
    beta = float(beta)
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number > 0; got {beta}")
    if tuple(np.shape(pi_ref)) != tuple(np.shape(rewards)):
        raise ValueError(f"rewards must have the shape of pi_ref {tuple(np.shape(pi_ref))}; got {tuple(np.shape(rewards))}")
    if isinstance(pi_ref, torch.Tensor):
        if (pi_ref < 0).any() or not torch.allclose(pi_ref.sum(-1), torch.ones((), dtype=pi_ref.dtype), atol=1e-6):
            raise ValueError("pi_ref must hold probabilities: >= 0, summing to 1 over the last axis")
        return torch.softmax(pi_ref.log() + rewards / beta, dim=-1)
    pi_ref, rewards = np.asarray(pi_ref, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
    if (pi_ref < 0).any() or not np.allclose(pi_ref.sum(-1), 1.0, atol=1e-6):
        raise ValueError("pi_ref must hold probabilities: >= 0, summing to 1 over the last axis")
    with np.errstate(divide="ignore"):  # pi_ref = 0 stays 0
        z = np.log(pi_ref) + rewards / beta
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def completion_logprobs(token_logps: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """log pi(y | x) of each completion: its token log-probs summed over the completion, shape (B,).

        log pi(y | x) = sum_t  m_t * log pi(y_t | x, y_<t)

    token_logps: (B, T) per-token log-probs (``course_lib.gpt.sequence_logprobs``; prompt
    positions and padding may hold anything, padding often holds 0 but need not);
    completion_mask: (B, T), 1 on the completion's tokens (its <eos> included), 0 on the
    prompt and on padding. Works for numpy arrays too.

    Example: token log-probs [[-9, -1, -2, -7]] with mask [[0, 1, 1, 0]] (a prompt token, two
    completion tokens, a pad) give [-3].
    """
    if token_logps.ndim != 2:
        raise ValueError(f"token_logps must have shape (B, T); got {tuple(token_logps.shape)}")
    if tuple(completion_mask.shape) != tuple(token_logps.shape):
        raise ValueError(f"completion_mask must have the shape of token_logps {tuple(token_logps.shape)}; "
                         f"got {tuple(completion_mask.shape)}")
    if isinstance(token_logps, torch.Tensor):
        return (token_logps * completion_mask.to(token_logps.dtype)).sum(dim=-1)
    return (np.asarray(token_logps, dtype=np.float64) * np.asarray(completion_mask, dtype=np.float64)).sum(axis=-1)


def implicit_rewards(policy_logps, ref_logps, beta: float):
    """DPO's implicit reward of each completion: r_hat(x, y) = beta * (log pi(y|x) - log pi_ref(y|x)), shape (B,).

    The reward the policy "believes in", up to the prompt-only term beta * log Z(x). Its
    difference between the chosen and the rejected completion is the Bradley-Terry logit
    inside ``dpo_loss``; the share of pairs where it ranks the chosen one higher is the
    "reward accuracy" that DPO runs report.

    Example: beta 0.1, log pi = [-3, -5], log pi_ref = [-4, -4] give [0.1, -0.1].
    """
    beta = float(beta)
    if not (beta > 0 and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number > 0; got {beta}")
    if tuple(np.shape(policy_logps)) != tuple(np.shape(ref_logps)):
        raise ValueError(f"ref_logps must have the shape of policy_logps {tuple(np.shape(policy_logps))}; "
                         f"got {tuple(np.shape(ref_logps))}")
    return beta * (policy_logps - ref_logps)


# ---------------------------------------------------------------- tokens and models
def pair_batch(prompts: Sequence[str], completions: Sequence[str], tokenizer: CharTokenizer | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenise "<bos> prompt completion <eos>" per row, right-padded.

    Returns ids (B, T), attention_mask (B, T) (1 on real tokens) and completion_mask (B, T)
    (1 on the completion's characters and its <eos>: the actions the policy took).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions must have the same length; got {len(prompts)} and {len(completions)}")
    if len(prompts) == 0:
        raise ValueError("prompts must hold at least one prompt")
    tokenizer = tokenizer or CharTokenizer()
    heads = [tokenizer.encode(p, bos=True) for p in prompts]
    tails = [tokenizer.encode(c, bos=False, eos=True) for c in completions]
    T = max(len(h) + len(t) for h, t in zip(heads, tails))
    B = len(prompts)
    ids = torch.full((B, T), tokenizer.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    completion_mask = torch.zeros((B, T), dtype=torch.long)
    for b, (h, t) in enumerate(zip(heads, tails)):
        ids[b, : len(h) + len(t)] = torch.tensor(h + t)
        attention_mask[b, : len(h) + len(t)] = 1
        completion_mask[b, len(h) : len(h) + len(t)] = 1
    return ids, attention_mask, completion_mask


def completion_logps(model: GPT, ids: torch.Tensor, attention_mask: torch.Tensor,
                     completion_mask: torch.Tensor) -> torch.Tensor:
    """log pi(y | x) of each row's completion under ``model``, shape (B,); differentiable.

    The pairs are right-padded to the longest row; ``skip_padding`` leaves the padding out of
    the per-token layers (the same numbers, less work).
    """
    return completion_logprobs(sequence_logprobs(model, ids, attention_mask, skip_padding=True), completion_mask)


# ---------------------------------------------------------------- training
@dataclass
class DPOConfig:
    """One DPO run on a fixed set of preference pairs."""

    beta: float = 0.5  # KL strength: the implicit reward is beta * log(pi / pi_ref); small beta lets pi move further
    epochs: int = 3  # passes over the pairs (DPO is offline: the same pairs every epoch)
    batch_size: int = 64  # pairs per optimiser step
    lr: float = 5e-5  # Adam learning rate (3e-4 drove the base model into malformed text in our sweeps)
    grad_clip: float = 1.0  # clip the gradient's global norm to this
    seed: int = 0  # shuffles the pairs

    def __post_init__(self):
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a finite number > 0; got {self.beta}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1; got {self.epochs} and {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")


def dpo_config(fast: bool | None = None) -> DPOConfig:
    """The course's DPO run on chapter 11's pairs (``fast``, default ``COURSE_FAST``: fast mode's pairs).

    One pass over the full setting's 16000 pairs; three over fast mode's 2000 (fewer pairs
    from a smaller base model), so fast mode still takes fewer steps.
    """
    fast = FAST if fast is None else fast
    return DPOConfig() if fast else DPOConfig(epochs=1)


def dpo_step(policy: GPT, optimizer: torch.optim.Optimizer, chosen: tuple, rejected: tuple,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
             grad_clip: float = 1.0) -> dict:
    """One DPO update on a minibatch of pairs; returns its statistics.

    chosen, rejected: (ids, attention_mask, completion_mask) from ``pair_batch``;
    ref_chosen_logps, ref_rejected_logps: (B,) log-probs under the frozen reference
    (computed once, outside, since the pairs never change).
    """
    policy.train()
    pi_chosen = completion_logps(policy, *chosen)  # (B,)
    pi_rejected = completion_logps(policy, *rejected)  # (B,)
    loss = dpo_loss(pi_chosen, pi_rejected, ref_chosen_logps, ref_rejected_logps, beta)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        r_chosen = implicit_rewards(pi_chosen, ref_chosen_logps, beta)
        r_rejected = implicit_rewards(pi_rejected, ref_rejected_logps, beta)
    return {
        "loss": float(loss.detach()),
        "reward_accuracy": float((r_chosen > r_rejected).float().mean()),  # implicit reward ranks the pair right
        "reward_margin": float((r_chosen - r_rejected).mean()),
        "chosen_logp_change": float((pi_chosen.detach() - ref_chosen_logps).mean()),
        "rejected_logp_change": float((pi_rejected.detach() - ref_rejected_logps).mean()),
    }


@torch.no_grad()
def _logps_in_chunks(model: GPT, batch: tuple, chunk: int = 256) -> torch.Tensor:
    model.eval()
    ids, attention_mask, completion_mask = batch
    return torch.cat([completion_logps(model, ids[i : i + chunk], attention_mask[i : i + chunk],
                                       completion_mask[i : i + chunk]) for i in range(0, len(ids), chunk)])


def train_dpo(policy: GPT, reference: GPT, pairs, config: DPOConfig,
              callback: Callable[[int, dict], None] | None = None, progress: bool = True) -> dict:
    """Train ``policy`` (in place) by DPO on ``pairs`` (prompts, chosen, rejected); return the history.

    ``pairs`` has fields ``prompts``, ``chosen``, ``rejected`` (lists of str, completions are
    the text after the prompt), e.g. ``course_lib.reward.preference_pairs``. ``reference``
    is frozen. The history holds per-step lists "loss", "reward_accuracy", "reward_margin",
    "chosen_logp_change", "rejected_logp_change", "seconds" (wall time since the start) and
    "cpu_seconds"; ``callback(step, history)`` is called after every step.
    """
    if not (len(pairs.prompts) == len(pairs.chosen) == len(pairs.rejected)) or len(pairs.prompts) == 0:
        raise ValueError("pairs must hold equally many (at least one) prompts, chosen and rejected completions; got "
                         f"{len(pairs.prompts)}, {len(pairs.chosen)}, {len(pairs.rejected)}")
    start, cpu_start = time.perf_counter(), time.process_time()
    # <bos> prompt completion <eos> must fit the model's block: cut over-long completions (they never ended anyway).
    room = [policy.config.block_size - 2 - len(p) for p in pairs.prompts]
    chosen = pair_batch(pairs.prompts, [c[: max(0, r)] for c, r in zip(pairs.chosen, room)])
    rejected = pair_batch(pairs.prompts, [c[: max(0, r)] for c, r in zip(pairs.rejected, room)])
    ref_chosen, ref_rejected = _logps_in_chunks(reference, chosen), _logps_in_chunks(reference, rejected)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, fused=True)  # one kernel for all weights
    rng = np.random.default_rng(config.seed)
    n = len(pairs.prompts)
    steps_per_epoch = math.ceil(n / config.batch_size)
    history = {k: [] for k in ("loss", "reward_accuracy", "reward_margin", "chosen_logp_change",
                               "rejected_logp_change", "seconds", "cpu_seconds")}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs * steps_per_epoch, desc="DPO")
    step = 0
    for _epoch in range(config.epochs):
        order = torch.as_tensor(rng.permutation(n))
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            stats = dpo_step(policy, optimizer, tuple(x[idx] for x in chosen), tuple(x[idx] for x in rejected),
                             ref_chosen[idx], ref_rejected[idx], config.beta, config.grad_clip)
            for k, v in stats.items():
                history[k].append(v)
            history["seconds"].append(time.perf_counter() - start)
            history["cpu_seconds"].append(time.process_time() - cpu_start)
            if callback is not None:
                callback(step, history)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.3f}", acc=f"{stats['reward_accuracy']:.2f}")
            step += 1
    if bar is not None:
        bar.close()
    policy.eval()
    return history


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def sample_completions(model: GPT, prompts: Sequence[str], seed: int, max_new_tokens: int | None = None,
                       temperature: float = 1.0, tokenizer: CharTokenizer | None = None) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """One sampled completion per prompt: (texts, completion ids (B, N), completion mask (B, N))."""
    tokenizer = tokenizer or CharTokenizer()
    ids = [tokenizer.encode(p) for p in prompts]
    max_new = max_new_tokens or model.config.block_size - max(map(len, ids)) - 1  # room for an <eos> if cut off
    completions, mask = generate(model, ids, max_new, temperature=temperature, eos_id=tokenizer.eos_id,
                                 generator=torch.Generator().manual_seed(seed))
    return tokenizer.decode_batch(completions, mask), completions, mask


@torch.no_grad()
def heldout_report(policy: GPT, reference: GPT, task, n: int = 200, seed: int = 1234) -> dict:
    """Sample one completion per held-out prompt and report what the comparison of chapter 14 needs.

    Returns a dict: "score" (mean of ``task.reward``: for reviews the labeler's true score,
    malformed ones included), "well_formed" (share above ``task.malformed_score`` when the
    task has one), "kl" (mean over samples of sum_t log pi(y_t|.) - log pi_ref(y_t|.), an
    unbiased estimate of the sequence-level KL(pi || pi_ref)), "length" (mean completion
    tokens, <eos> included) and "samples" (the first few texts).
    """
    tokenizer = CharTokenizer()
    prompts = task.prompts(n, np.random.default_rng(seed), "test")
    texts, _, _ = sample_completions(policy, prompts, seed, tokenizer=tokenizer)
    # Re-tokenise prompt + text (+ <eos>) so both models score exactly the tokens that were sampled.
    batch = pair_batch(prompts, texts, tokenizer)
    kl = (_logps_in_chunks(policy, batch) - _logps_in_chunks(reference, batch)).numpy()
    scores = np.asarray(task.reward(prompts, texts), dtype=np.float64)
    report = {"score": float(scores.mean()), "kl": float(kl.mean()),
              "length": float(batch[2].sum(dim=1).float().mean()), "samples": [p + t for p, t in zip(prompts[:6], texts[:6])]}
    if hasattr(task, "malformed_score"):
        report["well_formed"] = float((scores > task.malformed_score).mean())
    return report
