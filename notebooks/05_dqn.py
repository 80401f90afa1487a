# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 5 — DQN: Q-learning with a neural network
#
# Chapter 4's learners kept one number per state and action. That stops working as soon as the
# states are not a short list: the pole-balancing task of this chapter has four real-valued state
# variables, so the agent practically never sees the same state twice, and a table would learn
# nothing it could reuse. The fix is to *approximate* $Q$ with a function that generalises from
# the states it has seen to similar ones: a small neural network.
#
# Doing Q-learning with a network naively is famously unstable. The **deep Q-network** (DQN) of
# Mnih et al. (2015, *Human-level control through deep reinforcement learning*) made it work with
# two additions, and this chapter builds all of it:
#
# 1. the **semi-gradient TD loss**, and why it is Q-learning's update in disguise;
# 2. **experience replay**, a buffer of past transitions sampled at random;
# 3. a **target network**, a lagged copy of the network that computes the targets;
# 4. an **$\varepsilon$ schedule** that explores a lot at first and little later.
#
# Then we train it on CartPole until the last 100 episodes average at least 195, the classic
# "solved" mark, and check the greedy policy on 100 fresh episodes. The full setting takes about
# a minute on a laptop; `COURSE_FAST=1` (the tests) trains for a shorter budget that still shows
# the agent learning.

# %%
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from tqdm.auto import tqdm

from course_lib.config import FAST
from course_lib.dqn import (
    QNetwork,
    ReplayBuffer,
    dqn_huber_loss,
    dqn_loss,
    greedy_returns,
    linear_epsilon,
    make_cartpole,
    q_learning_target,
    sync_target,
)
from course_lib.td import epsilon_greedy, td_update

SEED = 0
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
# Small networks run fastest on one thread, and one thread gives the same numbers on every run.
torch.set_num_threads(1)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. CartPole
#
# A pole is hinged on a cart that moves along a track. Each step the agent pushes the cart left
# (action 0) or right (action 1) and gets a reward of $+1$. The episode **terminates** when the pole
# leans more than 12 degrees or the cart leaves the track ($|x| > 2.4$), and is **truncated** after
# 500 steps. The observation is $(x, \dot x, \theta, \dot\theta)$. So the return is the number of steps
# the pole stayed up, at most 500; a random policy manages about 20.
#
# We use gymnasium's own CartPole-v1 in its numpy-batched form: `make_cartpole(N)` returns N
# environments that step together in one call, `obs` of shape (N, 4), which is how we will collect
# experience. (gymnasium's API: `reset` returns `(obs, info)`, `step` returns
# `(obs, reward, terminated, truncated, info)`.)

# %%
envs, obs = make_cartpole(4, seed=SEED)
print("observations of 4 environments:\n", obs.round(3))
random_returns = greedy_returns(lambda o: torch.rand(o.shape[0], 2), n_episodes=100, seed=SEED)  # a random "network"
print(f"random policy: mean return {random_returns.mean():.1f} over 100 episodes")

# %% [markdown]
# ## 2. From the table to a network: the semi-gradient TD loss
#
# Replace the table by a network $Q(s, \cdot\,; \theta)$ that maps an observation to one value per
# action, shape (B, 4) -> (B, 2). Q-learning's target is unchanged,
#
# $$y = r + \gamma\,(1 - d)\,\max_{a'} Q(s', a'),$$
#
# and we fit $Q(s, a; \theta)$ to it by gradient descent on the squared error, averaged over a batch
# of transitions:
#
# $$L(\theta) = \frac{1}{B}\sum_i \tfrac12\big(y_i - Q(s_i, a_i; \theta)\big)^2, \qquad
#   -\nabla_\theta L = \frac{1}{B}\sum_i \big(y_i - Q(s_i, a_i; \theta)\big)\,\nabla_\theta Q(s_i, a_i; \theta).$$
#
# The target also depends on $\theta$, through $Q(s', \cdot)$, but we do **not** differentiate through it:
# $y$ is treated as a fixed number (in code, it is computed under `torch.no_grad()` and detached).
# That is why this is called a **semi**-gradient method (Sutton and Barto 2018, section 9.3). The full
# gradient would also push $Q(s')$ towards $Q(s)$, dragging the future towards the present; the
# semi-gradient only moves the prediction towards its target. (One of the source notes writes this
# loss with $Q(s', a')$ for the next action taken, which is SARSA's target; DQN uses the max.)
#
# Where does the table go? A table *is* a linear network on one-hot inputs: $Q(s, a; W) = W[s, a]$.
# For it, $\nabla_W Q(s, a)$ is 1 at $(s, a)$ and 0 elsewhere, so one SGD step of size $\alpha$ on
# $L$ is exactly chapter 4's update $W[s, a] \leftarrow W[s, a] + \alpha\,(y - W[s, a])$. Let us check:

# %%
S_demo, A_demo, alpha, gamma = 5, 2, 0.5, 0.9
W_table = rng.normal(size=(S_demo, A_demo))
s, a, r, s_next = 1, 0, 1.0, 3
y = q_learning_target(np.array([r]), W_table[None, s_next], np.array([False]), gamma)

W = torch.tensor(W_table, requires_grad=True)
one_hot = torch.eye(S_demo, dtype=torch.float64)[[s]]                    # (1, S): the input of the "network"
loss = dqn_loss(one_hot @ W, torch.tensor([a]), torch.tensor(y))         # B = 1
loss.backward()
with torch.no_grad():
    W -= alpha * W.grad                                                  # one SGD step

W_td = td_update(W_table[None], np.array([s]), np.array([a]), y, alpha)[0]
print("SGD on the loss:", W.detach().numpy()[s].round(4), "  TD update:", W_td[s].round(4))
assert np.allclose(W.detach().numpy(), W_td)

# %% [markdown]
# With a network instead of a table, one update also moves $Q$ at every *similar* state, which is the
# point (generalisation) and the danger: the target $y$ depends on the same weights, so chasing it
# moves it.
#
# ## 3. Two fixes: replay and a target network
#
# Trained on transitions in the order they arrive, with targets from the network being trained,
# Q-learning with a nonlinear network often oscillates or diverges. Two reasons, two fixes:
#
# * **Consecutive transitions are strongly correlated** (the pole at step 101 looks like at step 100),
#   so a gradient step on the latest few points overfits to the current stretch of the episode and
#   forgets the rest. **Experience replay** (Lin 1992) stores the last transitions in a buffer and trains
#   on minibatches drawn uniformly from it: nearly independent samples, and each transition is reused
#   many times.
# * **The target moves with every step.** A **target network** $Q(\cdot\,; \theta^-)$, a copy of the online
#   network refreshed only every $C$ updates, computes the targets,
#   $y = r + \gamma (1 - d) \max_{a'} Q(s', a'; \theta^-)$. Between refreshes the regression problem holds
#   still. (If the copy were never refreshed, the network would only ever learn one step of look-ahead
#   on top of its random initial weights; refreshing it every update brings the moving target back.)
#
# DQN also replaces the square by the **Huber loss** (quadratic for errors below 1, linear above), which is
# what Mnih et al.'s "clip the error term to [-1, 1]" amounts to: a rare huge TD error cannot take a huge
# step. `dqn_huber_loss` is `dqn_loss` with that change.
#
# ## 4. Many environments, and the reset step that is not a transition
#
# We collect experience from N CartPoles at once. gymnasium's batched CartPole resets an environment
# that has finished on the **next** call to `step`: that call ignores the action, returns the first
# observation of a new episode, and pays 0. Stored as a transition, it would say "from a fallen pole,
# pushing left teleports the cart to the centre of the track": nonsense that the Q-network would
# happily learn. So we remember which environments finished on the previous step, `prev_done`, and store
# only the others. Watch it happen:

# %%
demo_envs, demo_obs = make_cartpole(2, seed=SEED)
prev_done = np.zeros(2, dtype=bool)
for t in range(200):
    demo_next, demo_r, demo_term, demo_trunc, _ = demo_envs.step(np.zeros(2, dtype=np.int64))  # always push left
    if prev_done[0]:
        print(f"step {t}: env 0 was done, so this step is a reset: reward {demo_r[0]:.0f}, "
              f"obs jumps from x = {demo_obs[0, 0]:+.3f}, theta = {demo_obs[0, 2]:+.3f} to {demo_next[0, 0]:+.3f}, {demo_next[0, 2]:+.3f}")
        assert demo_r[0] == 0.0 and abs(demo_next[0, 2]) <= 0.05
        break
    prev_done = demo_term | demo_trunc
    demo_obs = demo_next
print("keep = ~prev_done:", ~prev_done)

# %% [markdown]
# A truncated episode is different from a terminated one: at 500 steps the pole is still up, and the
# state has a perfectly good future that the time limit cut off. So the buffer stores `terminated`, not
# `terminated or truncated`, and only `terminated` zeroes the bootstrap. (With next-step autoreset the
# truncating step returns the true last observation, so its $s'$ is right.)
#
# ## 5. The exploration schedule
#
# At first the network's values are noise, and acting on them is no better than acting at random; later
# they are worth following. `linear_epsilon` lowers $\varepsilon$ linearly from 1 to a small floor over the
# first part of training and then holds it.

# %%
@dataclass
class DQNConfig:
    seed: int = SEED                  # seeds numpy, torch and the environments
    num_envs: int = 8                 # CartPoles stepped together; one gradient update per vector step
    max_steps: int = 8_000            # budget of vector steps (num_envs environment steps each)
    buffer_size: int = 50_000         # transitions kept for replay
    batch_size: int = 128             # transitions per gradient update
    learning_rate: float = 5e-4       # Adam step size
    gamma: float = 0.99               # discount; the horizon 1 / (1 - gamma) = 100 steps
    epsilon_start: float = 1.0        # exploration at step 0
    epsilon_end: float = 0.05         # exploration floor
    epsilon_steps: int = 1_000        # vector steps over which epsilon falls linearly
    learning_starts: int = 125        # vector steps of pure collection before the first update
    target_every: int = 250           # gradient updates between copies into the target network
    hidden: tuple[int, ...] = (128, 128)  # widths of the Q-network's hidden layers
    solved_return: float = 195.0      # stop once the last 100 training episodes average this much


cfg = DQNConfig(max_steps=2_000) if FAST else DQNConfig()  # fast mode: a quarter of the budget
steps = np.arange(cfg.max_steps)
fig = go.Figure(go.Scatter(x=steps * cfg.num_envs, y=linear_epsilon(steps, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_steps)))
fig.update_layout(title="epsilon schedule", xaxis_title="environment steps", yaxis_title="epsilon", width=600, height=300)
fig.show()

# %% [markdown]
# ## 6. Training
#
# The loop, as in Mnih et al.'s Algorithm 1, with N environments per step:
#
# ```
# act epsilon-greedily on Q(s; theta) in every environment, step them all
# store the transitions that are real (not reset steps) in the buffer
# sample a minibatch; y = r + gamma (1 - terminated) max_a' Q(s', a'; theta-)
# one gradient step on the Huber loss between Q(s, a; theta) and y
# every C updates: theta- <- theta
# ```
#
# A progress bar shows the mean return of the last 100 episodes as it goes.

# %%
torch.manual_seed(cfg.seed)
rng = np.random.default_rng(cfg.seed)
envs, obs = make_cartpole(cfg.num_envs, seed=cfg.seed)
q_net = QNetwork(4, 2, cfg.hidden)
target_net = QNetwork(4, 2, cfg.hidden)
sync_target(target_net, q_net)
optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.learning_rate)
buffer = ReplayBuffer(cfg.buffer_size, obs_dim=4)

prev_done = np.zeros(cfg.num_envs, dtype=bool)
running_return = np.zeros(cfg.num_envs)
episode_returns, episode_end_steps, losses = [], [], []
n_updates, solved_at = 0, None
progress = tqdm(range(cfg.max_steps), desc="DQN on CartPole", unit="step")
for step in progress:
    # Act: epsilon-greedy on the online network, all environments at once.
    epsilon = linear_epsilon(step, cfg.epsilon_start, cfg.epsilon_end, cfg.epsilon_steps)
    with torch.no_grad():
        q_values = q_net(torch.as_tensor(obs)).numpy()               # (N, 2)
    actions = epsilon_greedy(q_values, epsilon, rng)
    next_obs, rewards, terminated, truncated, _ = envs.step(actions)

    # Store real transitions only: an env done on the previous step was just reset.
    buffer.add(obs, actions, rewards, next_obs, terminated, keep=~prev_done)
    running_return += rewards                                        # a reset step pays 0
    done = terminated | truncated
    episode_returns += running_return[done].tolist()
    episode_end_steps += [step * cfg.num_envs] * int(done.sum())
    running_return[done] = 0.0
    prev_done, obs = done, next_obs

    # Learn: one semi-gradient step on a replayed minibatch, targets from the target network.
    if step >= cfg.learning_starts:
        batch = buffer.sample(cfg.batch_size, rng)
        with torch.no_grad():
            targets = q_learning_target(batch.rewards, target_net(batch.next_obs), batch.terminated, cfg.gamma)
        loss = dqn_huber_loss(q_net(batch.obs), batch.actions, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n_updates += 1
        losses.append(loss.item())
        if n_updates % cfg.target_every == 0:
            sync_target(target_net, q_net)

    last_100 = np.mean(episode_returns[-100:]) if episode_returns else 0.0
    if step % 50 == 0:
        progress.set_postfix(episodes=len(episode_returns), last_100=f"{last_100:.1f}", epsilon=f"{epsilon:.2f}")
    if len(episode_returns) >= 100 and last_100 >= cfg.solved_return:
        solved_at = step
        break
progress.close()
env_steps = (step + 1) * cfg.num_envs
print(f"{len(episode_returns)} episodes, {env_steps} environment steps, {n_updates} gradient updates")
print("solved" if solved_at is not None else "not solved within the budget",
      f"(mean of the last 100 training episodes: {np.mean(episode_returns[-100:]):.1f})")

# %%
returns_arr = np.array(episode_returns)
moving = np.array([returns_arr[max(0, i - 99): i + 1].mean() for i in range(len(returns_arr))])
fig = go.Figure()
fig.add_trace(go.Scatter(x=episode_end_steps, y=returns_arr, mode="markers", marker=dict(size=3, opacity=0.4), name="episode return"))
fig.add_trace(go.Scatter(x=episode_end_steps, y=moving, mode="lines", name="mean of the last 100"))
fig.add_hline(y=cfg.solved_return, line_dash="dash", annotation_text="195")
fig.update_layout(title="DQN on CartPole-v1: training episodes (epsilon-greedy)", xaxis_title="environment steps",
                  yaxis_title="return", width=800, height=400)
fig.show()

# %% [markdown]
# The returns stay near 20 while $\varepsilon$ is high and the buffer fills, then climb steeply once the
# network's values start to mean something.
#
# ## 7. The greedy policy on fresh episodes
#
# The training returns include the exploration. Now act greedily, $a = \arg\max_a Q(s, a; \theta)$, on 100
# new episodes (other seeds than training):

# %%
eval_returns = greedy_returns(q_net, n_episodes=100, seed=10_000 + cfg.seed)
print(f"greedy policy: mean return {eval_returns.mean():.1f} over 100 episodes "
      f"(min {eval_returns.min():.0f}, max {eval_returns.max():.0f}); random policy: {random_returns.mean():.1f}")
early = np.mean(episode_returns[:20])
late = np.mean(episode_returns[-20:])
print(f"training: first 20 episodes {early:.1f}, last 20 episodes {late:.1f}")
assert late > 3 * early                              # it learned, in either setting
if FAST:
    assert eval_returns.mean() > 3 * random_returns.mean()
else:
    assert solved_at is not None and np.mean(episode_returns[-100:]) >= 195
    assert eval_returns.mean() >= 195

# %% [markdown]
# ## What to take away
#
# * A Q-network generalises across states; the tabular update is SGD on one-hot inputs.
# * The DQN loss is the semi-gradient TD loss: regress $Q(s, a; \theta)$ on $y = r + \gamma(1 - d)\max_{a'} Q(s', a'; \theta^-)$
#   with $y$ held fixed.
# * Replay decorrelates the data and reuses it; the target network holds the regression target still
#   for $C$ updates. Forget to refresh it and the agent never looks further than one step past its
#   initial weights.
# * $(1 - d)$ uses **terminated** only; a time-limit truncation still bootstraps, and the reset step of
#   a vector environment is not a transition at all.
#
# Next: **exercise 5** (`exercises/ex05_dqn.ipynb`): the schedule, the target, the loss and the target
# refresh. Chapter 6 leaves value functions behind and optimises the policy directly.
