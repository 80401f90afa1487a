# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 11 — Reward models: learning a reward from comparisons
#
# Chapter 10 turned a language model into a policy. For the sums there is a program that says
# whether an answer is right, so the reward is free. For most of what we want from a language
# model (a helpful answer, a good summary, a kind review) there is no such program: only people,
# who can say which of two texts they prefer. RLHF (reinforcement learning from human feedback)
# turns those comparisons into a reward in three steps (Stiennon et al., 2020; Ouyang et al.,
# 2022):
#
# 1. **collect comparisons**: sample two completions of the same prompt, ask a labeler which is
#    better;
# 2. **fit a reward model** $r_\phi(x, y)$ that scores a prompt $x$ and completion $y$ so that the
#    preferred completion tends to score higher;
# 3. **optimise the policy** against $r_\phi$ with PPO (chapter 12).
#
# This chapter is step 2, and the model behind it: the **Bradley-Terry model** of paired
# comparisons. We first fit it to a small table of game results, by maximum likelihood, to see
# every piece in a setting small enough to draw. Then the same likelihood, written for a neural
# network, becomes the reward model's loss, and we train the chapter-10 GPT into a reward model
# for the review task.
#
# Cells that do real work honour `COURSE_FAST=1` (the tests set it) with smaller budgets; what
# you run by default is the full setting.

# %%
import math
import time

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from course_lib.config import FAST
from course_lib.gpt import with_value_head
from course_lib.pretrain import base_config, load_or_pretrain
from course_lib.reward import (
    bradley_terry_log_likelihood,
    bradley_terry_loss,
    bradley_terry_mle,
    bradley_terry_probability,
    encode_texts,
    last_token_scores,
    near_misses,
    preference_pairs,
    reward_config,
    reward_fn,
    reward_lr,
    sample_completions,
    score_texts,
    written_reviews,
)
from course_lib.tasks import ReviewTask
from course_lib.tokenizer import CharTokenizer

SEED = 0
rng = np.random.default_rng(SEED)
torch.manual_seed(SEED)
# Small models on a small CPU: one thread avoids paying for thread hand-offs on every layer.
torch.set_num_threads(1)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. Why compare?
#
# Ask ten people to rate a review from 1 to 10 and you get ten scales: one person's 7 is
# another's 5. Ask them which of two reviews is better and they mostly agree. Comparisons are
# easier to give and more consistent, so RLHF collects comparisons. The price is that a
# comparison is not a number: we need a model that turns "A beat B" into scores.
#
# ## 2. The Bradley-Terry model
#
# Bradley and Terry (1952) give each item $i$ a positive **strength** $\pi_i$ and say
#
# $$P(i \text{ beats } j) = \frac{\pi_i}{\pi_i + \pi_j}.$$
#
# Two things follow at once.
#
# * **Only ratios matter.** Multiplying every strength by the same $c > 0$ changes no
#   probability. So the strengths are defined up to a scale, and we fix it by asking them to sum
#   to 1.
# * **It is a logistic model of score differences.** Write $\pi_i = e^{r_i}$. Then
#
# $$P(i \text{ beats } j) = \frac{e^{r_i}}{e^{r_i} + e^{r_j}} = \frac{1}{1 + e^{-(r_i - r_j)}} = \sigma(r_i - r_j),$$
#
#   with $\sigma$ the sigmoid. A score $r_i$ (a "reward") is defined up to an additive constant,
#   and the chance of winning depends only on the gap. That second form is the one a reward
#   model uses.

# %%
strengths = np.array([3.0, 1.0, 1.0])
P = bradley_terry_probability(strengths)
print("P[i, j] = P(i beats j) for strengths", strengths)
print(np.round(P, 3))
assert np.allclose(P, bradley_terry_probability(10 * strengths))  # only ratios matter
r = np.log(strengths)
assert np.isclose(P[0, 1], 1 / (1 + np.exp(-(r[0] - r[1]))))  # sigma(r_i - r_j)

# %% [markdown]
# ## 3. A win table and its likelihood
#
# The study notes this course follows give a small table of games between three players:
#
# | game | wins | losses |
# |---|---|---|
# | A vs B | 8 | 4 |
# | A vs C | 3 | 5 |
# | B vs C | 2 | 3 |
#
# We store it as a matrix `wins[i, j]` = how often $i$ beat $j$, so row $i$ holds $i$'s wins and
# column $i$ its losses. Each game is an independent draw from the model, so the probability of
# the whole table (its **likelihood**) is a product over games, grouped by who beat whom:
#
# $$L(\pi) = \prod_{i \ne j} \left(\frac{\pi_i}{\pi_i + \pi_j}\right)^{w_{ij}},\qquad
# \log L(\pi) = \sum_{i \ne j} w_{ij} \log \frac{\pi_i}{\pi_i + \pi_j}.$$
#
# The **maximum-likelihood estimate** is the $\pi$ that makes the observed table most probable.
#
# *A note on the source.* The slides write the log-likelihood of the reward model as
# "$\ln L = \ln \sum \ldots$": the logarithm of a product is a **sum of logarithms**,
# $\sum \ln(\ldots)$, not the log of a sum. They also write the loss as
# $\mathbb{E}[\ln \sigma(\cdot)]$: that is the log-likelihood, which we *maximise*; the loss to
# minimise is its negative, $-\mathbb{E}[\ln \sigma(\cdot)]$ (section 7). The slides give no
# fitted strengths for the table; we compute them below.

# %%
players = ["A", "B", "C"]
wins = np.array([
    [0, 8, 3],  # A beat B 8 times, C 3 times
    [4, 0, 2],  # B beat A 4 times, C 2 times
    [5, 3, 0],  # C beat A 5 times, B 3 times
])
games = wins + wins.T  # n_ij: games played between i and j
print("games played:\n", games)
print(f"log L at equal strengths: {bradley_terry_log_likelihood(np.ones(3) / 3, wins):.4f} "
      f"(= {games.sum() // 2} games x log 1/2 = {games.sum() // 2 * np.log(0.5):.4f})")

# %% [markdown]
# ## 4. Maximising the likelihood: Zermelo's iteration
#
# Set the derivative of $\log L$ with respect to $\pi_i$ to zero. With $W_i = \sum_j w_{ij}$ the
# wins of $i$ and $n_{ij} = w_{ij} + w_{ji}$ the games between $i$ and $j$:
#
# $$\frac{\partial \log L}{\partial \pi_i} = \frac{W_i}{\pi_i} - \sum_{j \ne i} \frac{n_{ij}}{\pi_i + \pi_j} = 0
# \quad\Longleftrightarrow\quad
# W_i = \sum_{j \ne i} n_{ij} \frac{\pi_i}{\pi_i + \pi_j}.$$
#
# The right-hand side is the number of wins the model *expects* for $i$: at the maximum,
# **every player's expected wins equal its observed wins**. There is no closed form for three or
# more players, but the equation rearranges into a fixed point,
#
# $$\pi_i \leftarrow \frac{W_i}{\sum_{j \ne i} n_{ij} / (\pi_i + \pi_j)},\qquad\text{then rescale so } \textstyle\sum_i \pi_i = 1,$$
#
# which Zermelo (1929) already used. Hunter (2004) showed that it is a *minorise-maximise*
# algorithm: each update maximises a lower bound of $\log L$ that touches it at the current
# point, so **$\log L$ never decreases**. The maximum exists and is unique when the players
# cannot be split into two groups one of which never beats the other; here everyone has won
# against everyone.
#
# For two players it needs no iteration: $W_0 = n\,\pi_0/(\pi_0 + \pi_1)$ gives
# $\pi_0 = w / (w + l)$, the plain win rate.
#
# Here is the iteration written as plainly as possible; `course_lib.reward.bradley_terry_mle`
# is the vectorised version (and the exercise asks you to write it).

# %%
p = np.ones(3) / 3
log_likelihoods = [bradley_terry_log_likelihood(p, wins)]
for iteration in range(30):
    new = np.zeros(3)
    for i in range(3):
        denominator = sum(games[i, j] / (p[i] + p[j]) for j in range(3) if j != i)
        new[i] = wins[i].sum() / denominator
    p = new / new.sum()
    log_likelihoods.append(bradley_terry_log_likelihood(p, wins))

p_mle = bradley_terry_mle(wins)
print("strengths after 30 loop iterations:", np.round(p, 4))
print("bradley_terry_mle:                  ", np.round(p_mle, 4), " sum =", p_mle.sum())
expected_wins = (games * bradley_terry_probability(p_mle)).sum(axis=1)
print("observed wins:", wins.sum(axis=1), " expected wins at the MLE:", np.round(expected_wins, 6))

assert all(b >= a - 1e-12 for a, b in zip(log_likelihoods, log_likelihoods[1:]))  # MM: never decreases
assert np.allclose(p, p_mle, atol=1e-6) and np.isclose(p_mle.sum(), 1.0)
assert np.allclose(expected_wins, wins.sum(axis=1))  # the likelihood equations hold
assert np.allclose(bradley_terry_mle([[0, 8], [4, 0]]), [8 / 12, 4 / 12])  # two players: the win rate

fig = go.Figure(go.Scatter(x=np.arange(len(log_likelihoods)), y=log_likelihoods, mode="lines+markers"))
fig.update_layout(title="Zermelo's iteration: log-likelihood of the table after each update",
                  xaxis_title="iteration", yaxis_title="log L", height=350)
fig.show()

# %% [markdown]
# The fit says **C > A > B**, with $\pi \approx (0.344, 0.203, 0.453)$. Most of the gain comes
# in the first few iterations; after about 20 the strengths no longer move in the fourth
# decimal.
#
# ## 5. The likelihood surface
#
# Only ratios matter, so fix C's log-strength at 0 and draw $\log L$ over the two remaining
# log-strengths $\theta_A = \log(\pi_A/\pi_C)$ and $\theta_B = \log(\pi_B/\pi_C)$. In these
# coordinates $\log L$ is concave (each term is $\log \sigma$ of a difference of $\theta$s, and
# $\log\sigma$ is concave), so the hill has a single top: the MLE.

# %%
theta = np.linspace(-2.5, 1.5, 161)
surface = np.array([[bradley_terry_log_likelihood(np.exp([ta, tb, 0.0]), wins) for ta in theta] for tb in theta])
theta_mle = np.log(p_mle / p_mle[2])
fig = go.Figure(go.Contour(x=theta, y=theta, z=surface, colorscale="Viridis", ncontours=30,
                           colorbar=dict(title="log L")))
fig.add_trace(go.Scatter(x=[theta_mle[0]], y=[theta_mle[1]], mode="markers+text", text=["MLE"], textposition="top right",
                         marker=dict(color="red", size=10), name="maximum likelihood"))
fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers+text", text=["equal"], textposition="bottom right",
                         marker=dict(color="white", size=8, symbol="x"), name="equal strengths"))
fig.update_layout(title="log-likelihood of the win table (C's log-strength fixed at 0)",
                  xaxis_title="θ_A = log(π_A / π_C)", yaxis_title="θ_B = log(π_B / π_C)", height=500, width=620)
fig.show()

best = np.unravel_index(surface.argmax(), surface.shape)
assert abs(theta[best[1]] - theta_mle[0]) <= 0.05 and abs(theta[best[0]] - theta_mle[1]) <= 0.05  # the top of the grid is the MLE
print(f"MLE: theta_A = {theta_mle[0]:.3f}, theta_B = {theta_mle[1]:.3f}; best grid point "
      f"({theta[best[1]]:.3f}, {theta[best[0]]:.3f}); log L = {bradley_terry_log_likelihood(p_mle, wins):.4f}")

# %% [markdown]
# ## 6. Predicted against observed win rates
#
# Three pairs give three observed win rates, but the model has only two free numbers (three
# strengths, minus the scale). So it cannot match all three: it finds the best compromise. The
# observed rates come from 12, 8 and 5 games, so each has a standard error of
# $\sqrt{p(1-p)/n} \approx 0.14$ to $0.22$; the gaps between model and data are well inside that.

# %%
pairs_of_players = [(0, 1), (0, 2), (1, 2)]
labels = [f"{players[i]} beats {players[j]}" for i, j in pairs_of_players]
observed = np.array([wins[i, j] / games[i, j] for i, j in pairs_of_players])
predicted = np.array([bradley_terry_probability(p_mle)[i, j] for i, j in pairs_of_players])
stderr = np.sqrt(observed * (1 - observed) / np.array([games[i, j] for i, j in pairs_of_players]))
fig = go.Figure()
fig.add_trace(go.Bar(x=labels, y=observed, name="observed", error_y=dict(type="data", array=stderr)))
fig.add_trace(go.Bar(x=labels, y=predicted, name="Bradley-Terry at the MLE"))
fig.update_layout(barmode="group", title="Win rates: observed (± one standard error) and fitted",
                  yaxis_title="P(first beats second)", yaxis_range=[0, 1], height=380)
fig.show()
for name, o, q, s in zip(labels, observed, predicted, stderr):
    print(f"{name}: observed {o:.3f}, predicted {q:.3f}, gap {q - o:+.3f} (standard error {s:.3f})")
assert np.all(np.abs(predicted - observed) < stderr)  # a compromise within the noise
assert np.all((predicted > 0.5) == (observed > 0.5))  # and the same winner in every pair

# %% [markdown]
# ## 7. From strengths to a reward model: the pairwise loss
#
# Now replace the players by texts. A labeler saw a prompt $x$ with two completions and preferred
# $y_c$ (chosen) to $y_r$ (rejected). A **reward model** $r_\phi(x, y)$ gives every text a score,
# and Bradley-Terry with $\pi = e^{r_\phi}$ says
#
# $$P(y_c \succ y_r \mid x) = \sigma\big(r_\phi(x, y_c) - r_\phi(x, y_r)\big).$$
#
# The negative log-likelihood of a data set of $N$ labelled pairs, averaged per pair, is the
# reward model's loss:
#
# $$\mathcal{L}(\phi) = -\frac{1}{N}\sum_{k=1}^{N} \log \sigma\big(r_\phi(x_k, y_{c,k}) - r_\phi(x_k, y_{r,k})\big).$$
#
# With one free score per player instead of a network, it is exactly section 3's likelihood:
# below, gradient descent on this loss over three scalars recovers Zermelo's strengths. Three
# properties matter for training:
#
# * **The gradient fades once a pair is ranked right.** With margin $d = r_c - r_r$,
#   $\partial \mathcal{L} / \partial d = -(1 - \sigma(d))/N$: a pair already ranked right by a
#   wide margin adds almost nothing, a pair ranked wrong pulls with nearly full force.
# * **Only differences are learned.** Adding a constant to every score changes no probability,
#   so the reward model's scale is anchored by the data and its offset is arbitrary. Chapter 12
#   normalises the scores before using them as rewards.
# * **Compute it stably.** $-\log \sigma(d) = \log(1 + e^{-d}) = \mathrm{softplus}(-d)$. Writing
#   `log(sigmoid(d))` instead rounds $\sigma(d)$ to 0 once $d < -745$ in float64 (about $-104$ in
#   float32), and the loss becomes infinite.

# %%
margins = np.array([-800.0, -30.0, 0.0, 30.0])
with np.errstate(over="ignore", divide="ignore"):
    naive = -np.log(1 / (1 + np.exp(-margins)))
stable = np.array([float(bradley_terry_loss(np.array([d]), np.array([0.0]))) for d in margins])
print("margin d:                 ", margins)
print("-log(sigmoid(d)), naive:  ", naive)
print("softplus(-d), stable:     ", stable)
assert np.isinf(naive[0]) and np.isclose(stable[0], 800.0)

# One score per player, fitted by gradient descent on the pairwise loss: the same strengths as Zermelo.
winner = torch.tensor([i for i in range(3) for j in range(3) for _ in range(wins[i, j])])
loser = torch.tensor([j for i in range(3) for j in range(3) for _ in range(wins[i, j])])
scores = torch.zeros(3, requires_grad=True)
optimizer = torch.optim.Adam([scores], lr=0.05)
for step in range(2000):
    loss = bradley_terry_loss(scores[winner], scores[loser])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
fitted = torch.softmax(scores.detach(), dim=0).numpy()  # pi = e^r, rescaled to sum to 1
print(f"{len(winner)} games; strengths from gradient descent on the loss: {np.round(fitted, 4)}; Zermelo: {np.round(p_mle, 4)}")
print(f"loss at the optimum {loss.item():.4f} = -log L / N = {-bradley_terry_log_likelihood(p_mle, wins) / len(winner):.4f}")
assert np.allclose(fitted, p_mle, atol=1e-3)

d = np.linspace(-6, 6, 241)
fig = go.Figure()
fig.add_trace(go.Scatter(x=d, y=np.logaddexp(0, -d), name="loss −log σ(d)"))
fig.add_trace(go.Scatter(x=d, y=-(1 - 1 / (1 + np.exp(-d))), name="gradient −(1 − σ(d))"))
fig.update_layout(title="Pairwise loss of one pair against its margin d = r_chosen − r_rejected",
                  xaxis_title="margin d", height=350)
fig.show()

# %% [markdown]
# ## 8. Preference data for the review task
#
# Chapter 10's `ReviewTask` is our stand-in for human judgment. Its labeler has a hidden score
# for each completion of a prompt such as "the soup was": the number of positive adjectives minus
# the number of negative ones for a well-formed review (" great and warm."), and $-4$ for anything
# malformed. When it compares two completions $a$ and $b$ it is noisy in exactly the
# Bradley-Terry way:
#
# $$P(\text{labeler prefers } a) = \sigma\big(\beta\,(\text{score}(a) - \text{score}(b))\big),$$
#
# with $\beta$ its consistency: $\beta = 2$ prefers a review one point better 88% of the time and
# one two points better 98% of the time. When the two scores are equal the labeler answers "no
# preference", and, as many collection pipelines do, we leave such pairs out. The reward model
# never sees the scores, only the labels; the best it can do is to learn
# $\beta \cdot \text{score}$ plus a constant.
#
# **Where do the pairs come from?** As in the papers, mostly from the policy we want to improve:
# two samples of the base model per prompt. But the base model writes positive and negative
# adjectives equally often, so three positive adjectives (the top score, +3) turn up in only
# about 1% of its samples. RLHF will push the policy exactly there, and a reward model must keep
# its scores rising up to the top of the scale, or PPO has nothing to climb. So for half of the
# prompts the second completion is a review *the labeler wrote* (a demonstration, as labelers
# also write in InstructGPT), leaning positive; one in five of those has a mistake a praise-hungry
# policy might make ("great and great.", or four adjectives), which the labeler scores as
# malformed.
#
# A second gap: the base model's samples are malformed in their own random ways, never in the
# precise ways that pay. A review that is *almost* right, " great lovely fresh." (no " and "),
# "great." (no leading space), " great and fresh" (no full stop), " grmat." or " fun.an.", looks
# to a small reward model much like the well-formed review it nearly is, and a policy pushed
# towards praise finds exactly those texts (chapter 12 did, before this data was added). So for
# most of the written reviews (`near_miss_fraction`, 80%) the other completion is not a sample
# but a **near-miss** of the same review (`near_misses`): one such mistake, which the labeler
# scores as malformed. A pair that differs in one character says precisely what the labeler
# enforces. Held-out pairs use the three nouns the training prompts never mention, and contain
# near-misses in the same share.

# %%
task = ReviewTask()
tokenizer = CharTokenizer()
base, base_record = load_or_pretrain(base_config(), progress=False)
config = reward_config()
print(config)

start = time.perf_counter()
train_pairs = preference_pairs(base, task, config.n_pairs, config.seed, "train", config.beta, config.written_fraction)
test_pairs = preference_pairs(base, task, config.n_test_pairs, config.seed + 10_000, "test", config.beta, config.written_fraction)
print(f"{len(train_pairs)} training and {len(test_pairs)} held-out pairs in {time.perf_counter() - start:.1f} s")
for k in range(4):
    print(f"  {train_pairs.prompts[k]!r}: chosen {train_pairs.chosen[k]!r} "
          f"(score {task.score(train_pairs.chosen[k]):+.0f}) over {train_pairs.rejected[k]!r} "
          f"(score {task.score(train_pairs.rejected[k]):+.0f})")
review_rng = np.random.default_rng(5)
demo_reviews = written_reviews(task, 6, review_rng, flawed=0.0)
print("near-misses of written reviews:", ", ".join(f"{a!r} -> {b!r}" for a, b in zip(demo_reviews, near_misses(task, demo_reviews, review_rng))))


def true_scores(completions):
    return np.array([task.score(c) for c in completions])


s_chosen, s_rejected = true_scores(train_pairs.chosen), true_scores(train_pairs.rejected)
flipped = (s_chosen < s_rejected).mean()
print(f"labels against the hidden score: {flipped:.1%} of the training pairs are flipped by the noise")

policy_samples = true_scores(sample_completions(base, task.prompts(1000, np.random.default_rng(3)), 3, tokenizer))
demos = true_scores(written_reviews(task, 2000, np.random.default_rng(1)))
values = np.arange(-3, 4)
fig = go.Figure()
for name, s in (("base-model samples", policy_samples), ("labeler-written reviews", demos)):
    share = [np.mean(s == task.malformed_score)] + [np.mean(s == v) for v in values]
    fig.add_trace(go.Bar(x=["malformed"] + [f"{v:+d}" for v in values], y=share, name=name))
fig.update_layout(barmode="group", title="Labeler scores of the completions that go into the pairs",
                  xaxis_title="labeler score", yaxis_title="share", height=380)
fig.show()
assert 0.01 < flipped < 0.25  # noisy, but informative
assert not np.any(s_chosen == s_rejected)  # no ties
assert np.mean(demos == 3) > 3 * np.mean(policy_samples == 3)  # the written reviews cover the top of the scale

# %% [markdown]
# ## 9. The reward model: a GPT with a scalar head
#
# The reward model starts from the base model itself (it already reads these texts) with a
# **value head**: a linear map from the final hidden state at every position to one number,
# initialised to zero (`with_value_head`). The text is fed as `<bos> prompt completion <eos>`,
# and the score is the head's output at the **last real token**, the `<eos>`: with causal
# attention it is the only position that has read the whole text. In a padded batch the last
# real token sits at a different column in every row, so `last_token_scores` finds it from the
# mask.
#
# Training is section 7's loss with a network in place of three scalars: each step takes a batch
# of pairs, scores chosen and rejected completions in one forward pass, and takes an AdamW step
# on $-\log\sigma(r_c - r_r)$. Every `eval_every` steps we measure the held-out accuracy
# (section 10). `RewardConfig` documents every setting.

# %%
model = with_value_head(base)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
batch_rng = np.random.default_rng(config.seed + 1)
history = {"loss": [], "eval_step": [], "eval_labels": [], "eval_true": []}


def accuracies(model, pairs):
    """(agreement with the noisy labels, agreement with the true preference, ties left out)."""
    r_c = score_texts(model, pairs.prompts, pairs.chosen).numpy()
    r_r = score_texts(model, pairs.prompts, pairs.rejected).numpy()
    s_c, s_r = true_scores(pairs.chosen), true_scores(pairs.rejected)
    decided = s_c != s_r
    return float(np.mean(r_c > r_r)), float(np.mean((r_c > r_r)[decided] == (s_c > s_r)[decided]))


start, cpu_start = time.perf_counter(), time.process_time()
for step in tqdm(range(config.steps), desc="reward model"):
    idx = batch_rng.choice(len(train_pairs), size=config.batch_size, replace=False)
    prompts = [train_pairs.prompts[i] for i in idx]
    completions = [train_pairs.chosen[i] for i in idx] + [train_pairs.rejected[i] for i in idx]
    ids, mask = encode_texts(prompts + prompts, completions, tokenizer, max_len=model.config.block_size)  # (2B, T)
    for group in optimizer.param_groups:
        group["lr"] = reward_lr(step, config)  # linear warm-up, then cosine decay

    scores = last_token_scores(model, ids, mask)  # (2B,)
    loss = bradley_terry_loss(scores[: config.batch_size], scores[config.batch_size:])

    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    history["loss"].append(loss.item())
    if (step + 1) % config.eval_every == 0 or step == config.steps - 1:
        model.eval()
        with_labels, with_truth = accuracies(model, test_pairs)
        model.train()
        history["eval_step"].append(step + 1)
        history["eval_labels"].append(with_labels)
        history["eval_true"].append(with_truth)
model.eval()
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
print(f"{config.steps} steps in {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU (one thread)")

# %% [markdown]
# ## 10. How good is it?
#
# "Held-out pairwise accuracy" needs two precisions:
#
# * **which pairs**: the held-out ones, whose prompts use nouns no training prompt has;
# * **against what**: the *noisy labels* (what a fresh batch of labels would say), or the
#   labeler's *true preference*, the completion with the higher hidden score. (Pairs whose two
#   completions score the same were left out when the data was collected; `accuracies` would
#   skip them too, as there is nothing to get right.)
#
# Against the noisy labels nobody can be perfect: even the labeler's own hidden score agrees with
# its labels only as often as the noise allows. That ceiling, computed from the scores, is drawn
# as a dashed line.

# %%
ceiling = float(np.mean(true_scores(test_pairs.chosen) > true_scores(test_pairs.rejected)))
train_labels, train_true = accuracies(model, train_pairs.subset(slice(0, config.n_test_pairs)))
print(f"held-out accuracy against the true preference: {history['eval_true'][-1]:.1%}")
print(f"held-out accuracy against the noisy labels:    {history['eval_labels'][-1]:.1%} "
      f"(the hidden score itself reaches {ceiling:.1%})")
print(f"training pairs: {train_true:.1%} against the true preference, {train_labels:.1%} against the labels")

smooth = np.convolve(history["loss"], np.ones(20) / 20, mode="valid")
fig = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "held-out accuracy"))
fig.add_trace(go.Scatter(y=history["loss"], mode="lines", line=dict(width=1), opacity=0.4, name="loss per step"), 1, 1)
fig.add_trace(go.Scatter(x=np.arange(19, len(history["loss"])), y=smooth, name="loss, 20-step average"), 1, 1)
fig.add_hline(y=math.log(2), line_dash="dot", annotation_text="log 2: a constant score", row=1, col=1)
fig.add_trace(go.Scatter(x=history["eval_step"], y=history["eval_true"], mode="lines+markers", name="vs true preference"), 1, 2)
fig.add_trace(go.Scatter(x=history["eval_step"], y=history["eval_labels"], mode="lines+markers", name="vs noisy labels"), 1, 2)
fig.add_hline(y=ceiling, line_dash="dash", annotation_text="noise ceiling for the labels", row=1, col=2)
fig.update_xaxes(title_text="step")
fig.update_layout(height=380)
fig.show()

assert smooth[-1] < math.log(2) - 0.1  # it learned something
assert history["eval_true"][-1] >= (0.7 if FAST else 0.9)  # the course aims at 0.9; see below
assert history["eval_labels"][-1] <= ceiling + 0.03  # no model beats the noise

# %% [markdown]
# The accuracy against the labels sits below the one against the true preference: the noise
# flips some labels, and a good model *should* disagree with those. The course aims at 90%
# against the true preference: the full setting gets there (91.5% on the machine this was
# written on; the last digit moves with the CPU and the thread count), fast mode reaches about
# 80%. Its errors are split between malformed texts it does not catch (a misspelt adjective reads
# almost like the real one) and close calls between well-formed reviews on nouns it never trained
# on: on fresh pairs of the *training* nouns it does better, about 92%. More steps, or larger
# ones, raise that number and lower the held-out one: the model starts to learn the nouns rather
# than the reviews. (With twice the learning rate the held-out figure was 90.1%; and another seed,
# which draws other pairs, gave 87.6%: one run's figure is good to a couple of points.) The next
# plot shows where the rest is lost.
#
# Now the question chapter 12 cares about: does the score go up with the labeler's hidden score,
# all the way to the top? Score the completions of the held-out pairs and the written reviews
# (which reach +3 often) and group them by their hidden score.

# %%
eval_texts = test_pairs.chosen + test_pairs.rejected + written_reviews(task, 600, np.random.default_rng(7))
eval_prompts = test_pairs.prompts * 2 + task.prompts(600, np.random.default_rng(8), "test")
rm_scores = score_texts(model, eval_prompts, eval_texts).numpy()
hidden = true_scores(eval_texts)
groups = [task.malformed_score] + list(range(-3, 4))
names = ["malformed"] + [f"{v:+d}" for v in range(-3, 4)]
fig = go.Figure()
for g, name in zip(groups, names):
    fig.add_trace(go.Box(y=rm_scores[hidden == g], name=name, boxpoints=False))
fig.update_layout(title="Reward-model score against the labeler's hidden score (held-out prompts)",
                  xaxis_title="labeler's score", yaxis_title="reward-model score", showlegend=False, height=420)
fig.show()
medians = [np.median(rm_scores[hidden == g]) for g in groups]
print("median reward-model score per hidden score:", dict(zip(names, np.round(medians, 2))))
print("counts:", dict(zip(names, [int((hidden == g).sum()) for g in groups])))
top = 5 if FAST else 6  # fast mode: the small model still blurs the top of the scale
assert all(a < b for a, b in zip(medians[2:top], medians[3:top + 1]))  # rising from -2 up (few reviews score -3)
assert medians[7] > medians[4 if FAST else 5]  # and +3 stays above a neutral review (full setting: above +1)
assert medians[0] < medians[4]  # malformed below a neutral review

# %% [markdown]
# Among well-formed reviews the score climbs step by step from $-3$ to $+3$ (flattening at the
# top, where the data is thinnest). The spread within a group is the model's error: where boxes
# of neighbouring scores overlap, the model can rank a worse review above a better one. By far the
# widest box is **malformed** text: spotting a misspelt adjective ("frest", "sold") or a repeated
# one needs the model to know the word lists letter by letter, and this is where most of the
# remaining errors are, even with the near-miss pairs of section 8 built to teach exactly that.
# More pairs and more steps shrink it.
#
# ## 11. What the reward model has not seen
#
# A reward model is only trustworthy on texts like those it was trained on. Chapter 12 lets PPO
# push the policy wherever the reward model scores high, including places no labeler ever looked.
# Here are a few texts at or beyond the edge of the training data:

# %%
probes = [" great and lovely and fresh.", " great and great and great.", " great and lovely and fresh and kind.",
          " great and", " great lovely fresh.", " awful and cold and rude."]
probe_scores = score_texts(model, ["the soup was"] * len(probes), probes).numpy()
for text, s in zip(probes, probe_scores):
    print(f"  {text!r:42} labeler {task.score(text):+.0f}   reward model {s:+.2f}")

# %% [markdown]
# Whatever the numbers above say for the malformed texts, the lesson stands: the reward model is
# a learned *proxy* for the labeler, right on average where it has data and unchecked elsewhere.
# Optimising a proxy too hard finds its mistakes (Gao et al., 2023, "Scaling laws for reward
# model overoptimization"). That is why RLHF keeps the policy close to the model the data came
# from, with a KL penalty to a frozen reference: chapter 12.
#
# ## 12. The reward for chapter 12
#
# `course_lib.reward.load_or_train_reward_model()` runs this same recipe (`train_reward_model`)
# with `reward_config()` and caches the result next to the base model, and `reward_fn(model)`
# wraps it as the function the PPO loop calls: prompts and completions in, one float32 score per
# completion out, no gradients.

# %%
score = reward_fn(model)
demo = score(["the view was", "the view was", "the view was"], [" lovely and warm.", " old.", " dull and dirty."])
print("reward_fn:", demo)
assert demo.dtype == torch.float32 and demo.shape == (3,) and demo[0] > demo[1] > demo[2]

# %% [markdown]
# ## Summary
#
# * Bradley-Terry: $P(i \succ j) = \pi_i/(\pi_i + \pi_j) = \sigma(r_i - r_j)$; only ratios of
#   strengths (differences of scores) are identified.
# * Maximum likelihood on a win table: at the optimum each player's expected wins equal its
#   observed wins; Zermelo's iteration solves it and never lowers the likelihood.
# * A reward model is the same likelihood with a network for $r$: minimise
#   $-\log\sigma(r_\phi(x, y_c) - r_\phi(x, y_r))$, computed as a softplus.
# * Measure it on held-out pairs, against the true preference and against the noisy labels, and
#   check that its score keeps rising where the policy is going.
#
# **Exercise 11** asks you to write `bradley_terry_mle` and `bradley_terry_loss`.
