# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Exercise 8 — the pieces of TRPO
#
# You will write three functions from chapter 8:
#
# 1. `surrogate_objective(logits, old_logits, actions, advantages)`: the importance-weighted surrogate $L$;
# 2. `categorical_kl(logits_p, logits_q)`: $\mathrm{KL}(p \,\|\, q)$ between two action distributions, per state;
# 3. `conjugate_gradient(Avp, b, iters)`: solve $A x = b$ with only products $A v$.
#
# Then one cell puts them together into a TRPO update of a CartPole policy.
#
# Replace each `raise NotImplementedError()` with your code, then run the check cell below it.
# A check prints which case failed, where, and what it expected. Work in torch for 1 and 2
# (the checks differentiate through your code); no loops over states or actions are needed.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false, "task": false}
import torch

# The networks in this exercise are tiny: one thread avoids paying for thread hand-offs.
torch.set_num_threads(1)

from course_lib.checks.ch08 import check_categorical_kl, check_conjugate_gradient, check_surrogate_objective

# %% [markdown] nbgrader={"grade": false, "grade_id": "surrogate_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 1. The surrogate objective (3 points)
#
# $$L(\theta) = \frac{1}{n} \sum_{t} \frac{\pi_\theta(a_t \mid s_t)}{\pi_{\text{old}}(a_t \mid s_t)}\, A_t$$
#
# `logits` has shape `(..., A)`: one row of action logits per sample, from the policy being
# optimised. `old_logits` (same shape) came from the policy that collected the data, and
# `actions` (shape `(...)`, integers) are the actions it took. `advantages` has shape `(...)`.
# Return the mean over all samples, a torch scalar.
#
# Three things to get right:
# * the ratio compares the probabilities of **the action taken** in each sample (`torch.gather`
#   picks one entry per row);
# * logits are not log-probabilities: normalise with `torch.log_softmax`, and take the ratio as
#   `exp(log pi - log pi_old)`;
# * $\pi_{\text{old}}$ is a constant of the update: no gradient may flow into `old_logits`.

# %% nbgrader={"grade": false, "grade_id": "surrogate", "locked": false, "schema_version": 3, "solution": true, "task": false}
def surrogate_objective(logits, old_logits, actions, advantages):
    """mean_t exp(log pi(a_t|s_t) - log pi_old(a_t|s_t)) * A_t.

    logits, old_logits: (..., A); actions: (...) int64; advantages: (...). Returns a scalar tensor.
    """
    ### BEGIN SOLUTION
    logp = torch.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    old_logp = torch.log_softmax(old_logits.detach(), dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return ((logp - old_logp).exp() * advantages).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "surrogate_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_surrogate_objective(surrogate_objective)
### BEGIN HIDDEN TESTS
check_surrogate_objective(surrogate_objective, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "kl_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 2. KL divergence between two action distributions (2 points)
#
# $$\mathrm{KL}(p \,\|\, q) = \sum_a p(a) \big(\log p(a) - \log q(a)\big)$$
#
# Both arguments are logits of shape `(..., A)`; return one divergence per state, shape `(...)`.
# Mind the direction: TRPO constrains $\mathrm{KL}(\pi_{\text{old}} \,\|\, \pi_\theta)$, the
# expectation under the **old** policy, which is where the data came from.

# %% nbgrader={"grade": false, "grade_id": "kl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def categorical_kl(logits_p, logits_q):
    """KL(p || q) per state from logits of shape (..., A); returns shape (...)."""
    ### BEGIN SOLUTION
    log_p = torch.log_softmax(logits_p, dim=-1)
    log_q = torch.log_softmax(logits_q, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "kl_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_categorical_kl(categorical_kl)
### BEGIN HIDDEN TESTS
check_categorical_kl(categorical_kl, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "cg_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## 3. Conjugate gradient (3 points)
#
# Solve $A x = b$ for a symmetric positive definite $A$ that you may only multiply by, through
# `Avp(v)` $= A v$. Start from $x = 0$, $r = b$, $p = r$ and repeat `iters` times:
#
# $$\alpha = \frac{r^\top r}{p^\top A p}, \quad x \leftarrow x + \alpha p, \quad
#   r_{\text{new}} = r - \alpha A p, \quad p \leftarrow r_{\text{new}} + \frac{r_{\text{new}}^\top r_{\text{new}}}{r^\top r}\, p.$$
#
# Call `Avp` once per iteration (it is the expensive part: in TRPO each call is two backward
# passes). Stop early if $r^\top r$ drops below `1e-20` (the system is solved and the next
# $\alpha$ would divide 0 by 0). Use only `+`, `-`, `*` and `(u * v).sum()`, so that the same code
# works on numpy arrays and on torch tensors.

# %% nbgrader={"grade": false, "grade_id": "cg", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conjugate_gradient(Avp, b, iters):
    """Approximate solution x of A x = b after `iters` CG iterations; b: vector (n,), numpy or torch."""
    ### BEGIN SOLUTION
    x = b * 0
    r = b * 1
    p = b * 1
    rr = float((r * r).sum())
    for _ in range(iters):
        if rr < 1e-20:
            break
        Ap = Avp(p)
        alpha = rr / float((p * Ap).sum())
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = float((r * r).sum())
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "cg_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
check_conjugate_gradient(conjugate_gradient)
### BEGIN HIDDEN TESTS
check_conjugate_gradient(conjugate_gradient, hidden=True)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "closing", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Putting it together: one TRPO update
#
# With all three working, this cell collects a batch of CartPole steps, computes the natural
# gradient with **your** conjugate gradient on Fisher-vector products of **your** KL, scales it to
# the trust region, and checks the result with a line search on **your** surrogate. (It is not graded.)

# %%
from course_lib.ppo import ActorCritic, EnvCursor, collect_rollout, make_cartpole, normalize_advantages, rollout_gae
from course_lib.trpo import backtracking_line_search, flat_grad, flat_params, make_fisher_vector_product, set_flat_params, trust_region_step

torch.manual_seed(0)
env = make_cartpole(4)
agent = ActorCritic()
rollout = collect_rollout(env, agent, EnvCursor.start(env, seed=0), num_steps=128, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    values = agent.value(torch.cat([rollout.obs, rollout.next_obs[:, None]], dim=1))
    advantages, _ = rollout_gae(rollout.rewards, values, rollout.terminated, rollout.truncated, gamma=0.99, lam=0.97)
keep = rollout.mask  # drop the reset steps
obs, actions, adv = rollout.obs[keep], rollout.actions[keep], normalize_advantages(advantages[keep])
params = list(agent.actor.parameters())
with torch.no_grad():
    old_logits = agent.logits(obs)

g = flat_grad(surrogate_objective(agent.logits(obs), old_logits, actions, adv), params)
fvp = make_fisher_vector_product(categorical_kl(old_logits, agent.logits(obs)).mean(), params, damping=0.1)
s = conjugate_gradient(fvp, g, 10)
fullstep = trust_region_step(s, fvp(s), max_kl=0.01)
theta_old = flat_params(params)


def evaluate(step):
    set_flat_params(params, theta_old + step)
    with torch.no_grad():
        logits = agent.logits(obs)
        out = (float(surrogate_objective(logits, old_logits, actions, adv)) - float(adv.mean()),
               float(categorical_kl(old_logits, logits).mean()))
    set_flat_params(params, theta_old)
    return out


result = backtracking_line_search(evaluate, fullstep, float(g @ fullstep), max_kl=0.01)
print(f"accepted fraction {result.fraction}: surrogate gain {result.trials[-1]['improvement']:.4f}, "
      f"KL {result.trials[-1]['kl']:.4f} (trust region 0.01)")
