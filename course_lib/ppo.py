"""PPO on the vectorised CartPole: the run's config, the rollout, the update's kernels, the loop.

CartPole is gymnasium's numpy-batched ``CartPoleVectorEnv``
(``gymnasium.make_vec("CartPole-v1", num_envs=N, vectorization_mode="vector_entry_point")``).
It resets with the **next-step** rule: the ``step`` after an episode ends does not
move the pole; it returns the first observation of a new episode with reward 0.
So in a rollout

* ``mask[n, t]`` is False on such reset steps: their action did nothing, and no
  loss may use them;
* ``terminated[n, t]`` (the pole fell or the cart left) stops bootstrapping;
* ``truncated[n, t]`` (the 500-step limit) is not a failure: the return continues
  past it, so GAE bootstraps with the value of the final observation, which is the
  observation stored at the following reset step (``rollout_gae``).

Shapes: N environments, T steps per rollout, D = 4 observation features,
A = 2 actions; time is the last axis of every per-step array (obs is (N, T, D)).
Chapter 8 reuses the network and the rollout for TRPO.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .losses import masked_mean, ppo_clip_loss
from .returns import gae

__all__ = [
    "PPOConfig",
    "ActorCritic",
    "make_cartpole",
    "EnvCursor",
    "Rollout",
    "collect_rollout",
    "rollout_gae",
    "normalize_advantages",
    "value_loss",
    "categorical_entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "minibatch_indices",
    "ppo_minibatch_loss",
    "PPOResult",
    "train_ppo",
]


@dataclass
class PPOConfig:
    """Hyperparameters of one PPO run on CartPole-v1 (the full setting; FAST shrinks total_steps)."""

    seed: int = 0  # seeds the network's initialisation, the action sampling, minibatches and the envs
    num_envs: int = 8  # N: CartPoles stepped together as one numpy batch
    num_steps: int = 256  # T: steps per env per rollout; one rollout holds N * T transitions
    total_steps: int = 300_000  # budget of environment steps (reset steps included)
    gamma: float = 0.99  # discount; 1 / (1 - gamma) = 100 steps of effective horizon
    lam: float = 0.95  # GAE's lambda: bias-variance knob of the advantage estimate (chapter 7)
    clip_eps: float = 0.2  # PPO's epsilon: the ratio is clipped to [1 - eps, 1 + eps]
    epochs: int = 10  # passes over each rollout
    minibatches: int = 4  # minibatches per pass; minibatch size = N * T / minibatches
    lr: float = 2e-3  # Adam's learning rate for actor and critic at the start
    anneal_lr: bool = True  # decay the learning rate linearly to 0 over total_steps
    ent_coef: float = 0.0  # weight of the entropy bonus (CartPole needs little exploration)
    vf_coef: float = 0.5  # weight of the value loss in the combined loss
    max_grad_norm: float = 0.5  # clip the global gradient norm (a cheap second guard on the step)
    norm_adv: bool = True  # standardise advantages per minibatch
    hidden: int = 64  # width of the two tanh hidden layers of the actor and of the critic
    target_return: float = 475.0  # CartPole-v1's "solved" threshold for the mean return
    return_window: int = 20  # the mean return is over this many most recent finished episodes
    stop_at_target: bool = False  # end the run as soon as the mean return reaches target_return
    torch_threads: int = 1  # intra-op threads while training: layers this small only lose from thread hand-offs

    def __post_init__(self):
        for name in ("num_envs", "num_steps", "total_steps", "epochs", "minibatches", "hidden", "return_window", "torch_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if (self.num_envs * self.num_steps) % self.minibatches:
            raise ValueError(
                f"minibatches must divide num_envs * num_steps = {self.num_envs * self.num_steps}; got {self.minibatches}"
            )
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"gamma and lam must be in [0, 1]; got gamma={self.gamma}, lam={self.lam}")
        if not self.clip_eps > 0 or not self.lr > 0:
            raise ValueError(f"clip_eps and lr must be > 0; got clip_eps={self.clip_eps}, lr={self.lr}")


# ---------------------------------------------------------------- network and environment
def _layer(n_in: int, n_out: int, gain: float) -> nn.Linear:
    # Orthogonal weights and zero biases (Engstrom et al. 2020; Andrychowicz et al. 2021):
    # a small gain on the policy's last layer starts it near uniform.
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """Two separate MLPs: the actor maps (..., D) observations to (..., A) logits, the critic to (...) values."""

    def __init__(self, obs_dim: int = 4, n_actions: int = 2, hidden: int = 64):
        super().__init__()
        root2 = math.sqrt(2.0)
        self.actor = nn.Sequential(
            _layer(obs_dim, hidden, root2), nn.Tanh(), _layer(hidden, hidden, root2), nn.Tanh(),
            _layer(hidden, n_actions, 0.01),
        )
        self.critic = nn.Sequential(
            _layer(obs_dim, hidden, root2), nn.Tanh(), _layer(hidden, hidden, root2), nn.Tanh(), _layer(hidden, 1, 1.0),
        )

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)  # (..., A)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)  # (...)


def make_cartpole(num_envs: int):
    """gymnasium's numpy-batched CartPole-v1 (next-step autoreset, 500-step limit)."""
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")


@dataclass
class EnvCursor:
    """Where each of the N environments stands between rollouts."""

    obs: np.ndarray  # (N, D) float32: the observation the next action is chosen from
    reset_next: np.ndarray  # (N,) bool: the episode just ended, so the next step is a reset step
    episode_return: np.ndarray  # (N,) float64: reward collected so far in the running episode
    episode_length: np.ndarray  # (N,) int64: steps taken so far in the running episode

    @classmethod
    def start(cls, env, seed: int) -> "EnvCursor":
        obs, _ = env.reset(seed=seed)
        n = obs.shape[0]
        return cls(obs, np.zeros(n, dtype=bool), np.zeros(n), np.zeros(n, dtype=np.int64))


@dataclass
class Rollout:
    """N * T transitions from the policy pi_old, time on the last axis."""

    obs: torch.Tensor  # (N, T, D) s_t
    actions: torch.Tensor  # (N, T) int64 a_t
    logp: torch.Tensor  # (N, T) log pi_old(a_t | s_t)
    rewards: torch.Tensor  # (N, T) r_t
    terminated: torch.Tensor  # (N, T) bool: the episode failed with step t
    truncated: torch.Tensor  # (N, T) bool: the time limit ended it with step t
    mask: torch.Tensor  # (N, T) bool: False on reset steps, which are not transitions
    next_obs: torch.Tensor  # (N, D) the observation after the last step (for bootstrapping)
    episode_returns: np.ndarray  # returns of the episodes that finished during the rollout
    episode_lengths: np.ndarray  # their lengths


def collect_rollout(env, agent: ActorCritic, cursor: EnvCursor, num_steps: int, generator: torch.Generator) -> Rollout:
    """Run the policy for ``num_steps`` steps in every environment; ``cursor`` is advanced in place.

    Actions are sampled with the Gumbel-max trick, argmax(logits + Gumbel noise), which
    draws exactly from softmax(logits) and takes the seeded ``generator``.
    """
    N, D = cursor.obs.shape
    T = num_steps
    obs = np.empty((N, T, D), dtype=np.float32)
    actions = torch.empty((N, T), dtype=torch.int64)
    logp = torch.empty((N, T))
    rewards = np.empty((N, T), dtype=np.float32)
    terminated = np.empty((N, T), dtype=bool)
    truncated = np.empty((N, T), dtype=bool)
    mask = np.empty((N, T), dtype=bool)
    finished_returns, finished_lengths = [], []
    with torch.no_grad():
        for t in range(T):
            obs[:, t] = cursor.obs
            mask[:, t] = ~cursor.reset_next
            logits = agent.logits(torch.from_numpy(cursor.obs))  # (N, A)
            u = torch.rand(logits.shape, generator=generator).clamp_(1e-12, 1.0)
            a = (logits - torch.log(-torch.log(u))).argmax(dim=-1)  # (N,)
            actions[:, t] = a
            logp[:, t] = torch.log_softmax(logits, dim=-1).gather(-1, a[:, None]).squeeze(-1)
            cursor.obs, r, term, trunc, _ = env.step(a.numpy())
            rewards[:, t], terminated[:, t], truncated[:, t] = r, term, trunc
            cursor.episode_return += r
            cursor.episode_length += mask[:, t]
            done = term | trunc
            if done.any():
                finished_returns.extend(cursor.episode_return[done].tolist())
                finished_lengths.extend(cursor.episode_length[done].tolist())
                cursor.episode_return[done] = 0.0
                cursor.episode_length[done] = 0
            cursor.reset_next = done
    return Rollout(
        obs=torch.from_numpy(obs), actions=actions, logp=logp, rewards=torch.from_numpy(rewards),
        terminated=torch.from_numpy(terminated), truncated=torch.from_numpy(truncated), mask=torch.from_numpy(mask),
        next_obs=torch.from_numpy(cursor.obs.copy()),
        episode_returns=np.asarray(finished_returns, dtype=np.float64),
        episode_lengths=np.asarray(finished_lengths, dtype=np.int64),
    )


def rollout_gae(rewards, values, terminated, truncated, gamma: float, lam: float):
    """GAE advantages and value targets for a next-step-autoreset rollout.

    rewards, terminated, truncated: shape (..., T); values: shape (..., T + 1), where
    values[..., t + 1] is V of the observation after step t (for the last step, of
    ``next_obs``). A terminated step bootstraps nothing. A truncated one is cut from
    what follows (the next step belongs to a new episode) but keeps the value of its
    final observation, which it gets through the reward:

        r'_t = r_t + gamma * V(s_{t+1})   if truncated and not terminated,
        A = gae(r', values, gamma, lam, dones = terminated | truncated),   R = A + V(s_t).

    Returns (advantages, returns), each of shape (..., T). Reset steps get values too;
    the loss masks them out.
    """
    if tuple(values.shape) != tuple(rewards.shape[:-1]) + (rewards.shape[-1] + 1,):
        raise ValueError(f"values must have shape (..., T + 1) for rewards of shape {tuple(rewards.shape)}; got {tuple(values.shape)}")
    for name, x in (("terminated", terminated), ("truncated", truncated)):
        if tuple(x.shape) != tuple(rewards.shape):
            raise ValueError(f"{name} must have the shape of rewards {tuple(rewards.shape)}; got {tuple(x.shape)}")
    bootstrap = (truncated & ~terminated).to(values.dtype)
    shaped = rewards.to(values.dtype) + gamma * values[..., 1:] * bootstrap
    advantages = gae(shaped, values, gamma, lam, dones=terminated | truncated)
    return advantages, advantages + values[..., :-1]


# ---------------------------------------------------------------- update kernels
def normalize_advantages(advantages: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean) / (std + eps) over the unmasked entries; masked entries become 0.

    advantages, mask: shape (...,). Keeps the step size of the policy loss
    independent of the reward scale (a standard PPO detail, not in the paper).
    """
    if mask is None:
        mask = torch.ones_like(advantages, dtype=torch.bool)
    if tuple(mask.shape) != tuple(advantages.shape):
        raise ValueError(f"mask must have the shape of advantages {tuple(advantages.shape)}; got {tuple(mask.shape)}")
    m = mask.to(advantages.dtype)
    n = m.sum()
    if n < 1:
        raise ValueError("mask must mark at least one entry as valid; it is all false")
    mean = (advantages * m).sum() / n
    var = ((advantages - mean) ** 2 * m).sum() / (n - 1).clamp(min=1)  # unbiased, as torch.std
    return (advantages - mean) / (var.sqrt() + eps) * m


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1/2 mean (V(s_t) - R_t)^2 over the unmasked entries; ``returns`` is a fixed target (detached).

    values, returns, mask: shape (..., T). Returns a scalar.
    """
    if tuple(values.shape) != tuple(returns.shape):
        raise ValueError(f"returns must have the shape of values {tuple(values.shape)}; got {tuple(returns.shape)}")
    return 0.5 * masked_mean((values - returns.detach()) ** 2, mask)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(pi(.|s)) = -sum_a pi_a log pi_a from logits of shape (..., A); returns shape (...).

    At most log A (uniform policy), 0 for a deterministic one.
    """
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Estimate KL(pi_old || pi_theta) from the sampled actions only: mean of (r - 1) - log r.

    r = exp(logp - old_logp); the actions were drawn from pi_old, so E[r - 1] = 0 and each
    term (r - 1) - log r >= 0 is an unbiased, low-variance estimate of the KL (the "k3"
    estimator of J. Schulman, "Approximating KL divergence", 2020; CleanRL logs it as
    approx_kl). Shapes (..., T); returns a scalar without gradient.
    """
    with torch.no_grad():
        log_ratio = logp - old_logp
        return masked_mean(log_ratio.exp() - 1.0 - log_ratio, mask)


def clip_fraction(logp: torch.Tensor, old_logp: torch.Tensor, eps: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Fraction of the unmasked samples whose ratio has left [1 - eps, 1 + eps]. Shapes (..., T); scalar."""
    with torch.no_grad():
        ratio = (logp - old_logp).exp()
        return masked_mean(((ratio - 1.0).abs() > eps).to(logp.dtype), mask)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """1 - Var[R - V] / Var[R]: 1 for a perfect critic, 0 for one that predicts the mean, < 0 for worse."""
    with torch.no_grad():
        var_r = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
        resid = returns - values
        var_resid = masked_mean((resid - masked_mean(resid, mask)) ** 2, mask)
        return float("nan") if var_r == 0 else float(1.0 - var_resid / var_r)


def minibatch_indices(batch_size: int, minibatches: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A random split of range(batch_size) into ``minibatches`` equal index sets."""
    if batch_size % minibatches:
        raise ValueError(f"minibatches must divide batch_size = {batch_size}; got {minibatches}")
    return list(torch.randperm(batch_size, generator=generator).split(batch_size // minibatches))


def ppo_minibatch_loss(agent: ActorCritic, obs, actions, old_logp, advantages, returns, mask, cfg: PPOConfig):
    """The combined PPO loss on one minibatch and what to log about it.

    loss = ppo_clip_loss + vf_coef * value_loss - ent_coef * entropy, everything masked.
    obs: (B, D); actions, old_logp, advantages, returns, mask: (B,).
    Returns (loss, stats) with stats a dict of floats.
    """
    logits = agent.logits(obs)  # (B, A)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, actions[:, None]).squeeze(-1)  # (B,)
    if cfg.norm_adv:
        advantages = normalize_advantages(advantages, mask)
    policy_loss = ppo_clip_loss(logp, old_logp, advantages, cfg.clip_eps, mask)
    entropy = masked_mean(categorical_entropy(logits), mask)
    v_loss = value_loss(agent.value(obs), returns, mask)
    loss = policy_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
    stats = dict(
        policy_loss=float(policy_loss.detach()), value_loss=float(v_loss.detach()), entropy=float(entropy.detach()),
        approx_kl=float(approx_kl(logp, old_logp, mask)),
        clip_fraction=float(clip_fraction(logp, old_logp, cfg.clip_eps, mask)),
    )
    return loss, stats


# ---------------------------------------------------------------- the loop
@dataclass
class PPOResult:
    """What a ``train_ppo`` run produced."""

    agent: ActorCritic
    config: PPOConfig
    log: list = field(default_factory=list)  # one dict per update: steps, mean_return, approx_kl, clip_fraction, wall_s, cpu_s, ...
    episode_returns: list = field(default_factory=list)  # every finished training episode's return, in order
    solved_at: dict | None = None  # steps, wall_s, cpu_s when the mean return first reached target_return


def train_ppo(cfg: PPOConfig, progress: bool = True) -> PPOResult:
    """PPO-clip on CartPole-v1 (Schulman et al. 2017, Algorithm 1), with GAE and the usual details.

    Flat on purpose: each line of the loop is one line of the algorithm. The mean return
    is that of the last ``cfg.return_window`` finished training episodes (sampled actions).
    Wall and CPU seconds in the log count from the start of this call. Torch runs with
    ``cfg.torch_threads`` threads during the call (restored afterwards): with two threads on
    a busy two-core machine the same run took six times longer.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        return _train_ppo(cfg, progress)
    finally:
        torch.set_num_threads(previous_threads)


def _train_ppo(cfg: PPOConfig, progress: bool) -> PPOResult:
    from tqdm.auto import tqdm

    wall0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    env = make_cartpole(cfg.num_envs)
    cursor = EnvCursor.start(env, seed=cfg.seed)
    agent = ActorCritic(env.single_observation_space.shape[0], int(env.single_action_space.n), cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    batch_size = cfg.num_envs * cfg.num_steps
    n_updates = max(1, cfg.total_steps // batch_size)
    result = PPOResult(agent, cfg)

    bar = tqdm(range(n_updates), desc="PPO", disable=not progress)
    for update in bar:
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.lr * (1.0 - update / n_updates)

        # 1. Collect N * T transitions with the current policy, which becomes pi_old.
        rollout = collect_rollout(env, agent, cursor, cfg.num_steps, generator)
        result.episode_returns.extend(rollout.episode_returns.tolist())

        # 2. Advantages by GAE and value targets, with V from the critic before the update.
        with torch.no_grad():
            all_obs = torch.cat([rollout.obs, rollout.next_obs[:, None]], dim=1)  # (N, T + 1, D)
            values = agent.value(all_obs)  # (N, T + 1)
            advantages, returns = rollout_gae(
                rollout.rewards, values, rollout.terminated, rollout.truncated, cfg.gamma, cfg.lam
            )

        # 3. Several epochs of minibatch gradient steps on the clipped loss.
        obs, actions, old_logp = rollout.obs.reshape(batch_size, -1), rollout.actions.reshape(-1), rollout.logp.reshape(-1)
        adv, ret, mask = advantages.reshape(-1), returns.reshape(-1), rollout.mask.reshape(-1)
        losses = []
        for epoch in range(cfg.epochs):
            for idx in minibatch_indices(batch_size, cfg.minibatches, generator):
                loss, mb_stats = ppo_minibatch_loss(agent, obs[idx], actions[idx], old_logp[idx], adv[idx], ret[idx], mask[idx], cfg)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
                losses.append(mb_stats)

        # 4. Log: the mean return of recent episodes, and how far the policy moved (whole batch, after the update).
        with torch.no_grad():
            logits = agent.logits(obs)
            logp = torch.log_softmax(logits, dim=-1).gather(-1, actions[:, None]).squeeze(-1)
        recent = result.episode_returns[-cfg.return_window:]
        mean_return = float(np.mean(recent)) if recent else float("nan")
        row = dict(
            update=update, steps=(update + 1) * batch_size, mean_return=mean_return,
            approx_kl=float(approx_kl(logp, old_logp, mask)), clip_fraction=float(clip_fraction(logp, old_logp, cfg.clip_eps, mask)),
            entropy=float(masked_mean(categorical_entropy(logits), mask)),
            explained_variance=explained_variance(values[:, :-1].reshape(batch_size), ret, mask),
            policy_loss=float(np.mean([m["policy_loss"] for m in losses[-cfg.minibatches:]])),
            value_loss=float(np.mean([m["value_loss"] for m in losses[-cfg.minibatches:]])),
            wall_s=time.perf_counter() - wall0, cpu_s=time.process_time() - cpu0,
        )
        result.log.append(row)
        bar.set_postfix(mean_return=f"{mean_return:.0f}", kl=f"{row['approx_kl']:.4f}")
        if result.solved_at is None and len(recent) == cfg.return_window and mean_return >= cfg.target_return:
            result.solved_at = {k: row[k] for k in ("update", "steps", "wall_s", "cpu_s")}
            if cfg.stop_at_target:
                break
    bar.close()
    env.close()
    return result
