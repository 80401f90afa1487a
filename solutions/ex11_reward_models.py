# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 11 — Bradley-Terry and the reward model's loss
#
# Chapter 11 modelled a comparison with Bradley-Terry, $P(i \text{ beats } j) = \pi_i / (\pi_i + \pi_j)$,
# fitted strengths to a win table by maximum likelihood, and trained a reward model on the
# pairwise loss $-\log\sigma(r_c - r_r)$. You will write the two functions behind that:
#
# 1. `bradley_terry_mle(wins)`: the maximum-likelihood strengths of a win table, by Zermelo's
#    iteration;
# 2. `bradley_terry_loss(r_chosen, r_rejected)`: the reward model's loss, numerically stable.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import numpy as np
import torch
import torch.nn.functional as F

from course_lib.checks.ch11 import SEED_TABLE, check_bradley_terry_loss, check_bradley_terry_mle

# %% [markdown] nbgrader={"grade": false, "grade_id": "mle_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. Maximum-likelihood strengths (4 points)
#
# `wins` is an (n, n) array: `wins[i, j]` counts how often player $i$ **beat** player $j$ (the
# diagonal is 0). With $W_i = \sum_j w_{ij}$ the wins of $i$ and $n_{ij} = w_{ij} + w_{ji}$ the
# games between $i$ and $j$, repeat
#
# $$\pi_i \leftarrow \frac{W_i}{\sum_{j \ne i} n_{ij} / (\pi_i + \pi_j)} \quad \text{for all } i \text{ at once},
# \qquad \text{then } \pi \leftarrow \pi / \textstyle\sum_k \pi_k,$$
#
# starting from equal strengths, until no strength moves by more than `tol` (or `iters` times).
# Return an array of shape (n,) that **sums to 1**.
#
# Vectorise over players: `p[:, None] + p[None, :]` is the (n, n) table of $\pi_i + \pi_j$.
# Pairs that never played have $n_{ij} = 0$ and must add nothing (mind $0/0$ when two strengths
# are 0: you may assume every player has won at least once). For two players the answer is
# the win rate: `[[0, 3], [1, 0]]` gives `[0.75, 0.25]`.

# %% nbgrader={"grade": false, "grade_id": "mle", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bradley_terry_mle(wins, iters=10_000, tol=1e-12):
    """Bradley-Terry strengths (n,) summing to 1 that maximise the likelihood of ``wins`` (n, n)."""
    ### BEGIN SOLUTION
    wins = np.asarray(wins, dtype=float)
    games = wins + wins.T  # n_ij
    won = wins.sum(axis=1)  # W_i: row sums, since wins[i, j] counts i's wins over j
    p = np.full(len(wins), 1.0 / len(wins))
    for _ in range(iters):
        total = p[:, None] + p[None, :]
        denominator = np.divide(games, total, out=np.zeros_like(games), where=games > 0).sum(axis=1)
        new = won / denominator
        new = new / new.sum()
        if np.max(np.abs(new - p)) < tol:
            return new
        p = new
    return p
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "mle_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_bradley_terry_mle(bradley_terry_mle)
### BEGIN HIDDEN TESTS
check_bradley_terry_mle(bradley_terry_mle, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "loss_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. The pairwise loss (4 points)
#
# A reward model gives the preferred completion a score `r_chosen` and the other one `r_rejected`
# (arrays of shape (B,): one pair per entry). The loss is the **mean** over pairs of
#
# $$-\log \sigma(r_c - r_r) = \log\big(1 + e^{-(r_c - r_r)}\big).$$
#
# * numpy arrays in, a numpy number out; torch tensors in, a 0-d torch tensor out that
#   gradients flow through (the reward model is trained with it);
# * it must stay finite for any margin: `np.log(1 / (1 + np.exp(-d)))` breaks for $d = -900$.
#   Use `np.logaddexp(0, -d)` (that is $\log(e^0 + e^{-d})$) in numpy and `F.softplus(-d)` or
#   `-F.logsigmoid(d)` in torch.

# %% nbgrader={"grade": false, "grade_id": "loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def bradley_terry_loss(r_chosen, r_rejected):
    """Mean over pairs of -log sigmoid(r_chosen - r_rejected); torch in, torch out; numpy in, numpy out."""
    ### BEGIN SOLUTION
    margin = r_chosen - r_rejected
    if isinstance(margin, torch.Tensor):
        return F.softplus(-margin).mean()
    return np.logaddexp(0.0, -margin).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "loss_check", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
check_bradley_terry_loss(bradley_terry_loss)
### BEGIN HIDDEN TESTS
check_bradley_terry_loss(bradley_terry_loss, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together
#
# The two functions describe the same model. This cell fits the chapter's A/B/C table twice:
# with **your** Zermelo iteration, and by gradient descent on **your** loss with one free score
# per player ($\pi = e^r$). Both maximise the same likelihood, so they must agree. (It is not
# graded.)

# %%
winner = torch.tensor([i for i in range(3) for j in range(3) for _ in range(SEED_TABLE[i, j])])
loser = torch.tensor([j for i in range(3) for j in range(3) for _ in range(SEED_TABLE[i, j])])
r = torch.zeros(3, requires_grad=True)
optimizer = torch.optim.Adam([r], lr=0.05)
for _ in range(1500):
    loss = bradley_terry_loss(r[winner], r[loser])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print("Zermelo:               ", np.round(bradley_terry_mle(SEED_TABLE), 4))
print("gradient descent on r: ", np.round(torch.softmax(r.detach(), 0).numpy(), 4))
