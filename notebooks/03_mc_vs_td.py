# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 3 — Monte Carlo vs temporal difference: learning values from experience
#
# Chapters 1 and 2 computed values from the model $(P, R)$. Usually there is no model: there is
# only experience, episodes of states and rewards. This chapter estimates $V_\pi$ from episodes
# in two ways, and measures what separates them:
#
# * **Monte Carlo (MC)** waits until the episode ends and moves $V(S_t)$ towards the return $G_t$
#   that actually followed;
# * **temporal difference (TD)** moves $V(S_t)$ after a single step, towards the reward plus its
#   *own estimate* of the next state's value, $R_{t+1} + \gamma V(S_{t+1})$;
# * **n-step TD** sits in between: $n$ real rewards, then the estimate.
#
# The difference is a **bias-variance trade-off**, and we measure it rather than assert it: on a
# ride-sharing trip (the example of our notes), on Sutton and Barto's random walk (Example 6.2,
# whose learning curves we reproduce) and on the 19-state walk of their Figure 7.2.
#
# All the learners here advance many independent runs in one array operation, so averaging over
# 100 runs takes seconds.

# %%
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from tqdm.auto import tqdm

from course_lib.bellman import evaluate_policy
from course_lib.config import FAST
from course_lib.prediction import (
    mc_prediction,
    n_step_returns,
    n_step_td_prediction,
    random_walk,
    random_walk_values,
    rms_error,
    sample_random_walk,
    td0_prediction,
)
from course_lib.returns import discounted_returns, td_errors

SEED = 0
rng = np.random.default_rng(SEED)
print("fast mode" if FAST else "full setting")

# %% [markdown]
# ## 1. A ride: predicting travel time
#
# A ride-sharing app predicts how long a trip will take, and revises the prediction along the
# way. At pickup it says **30 minutes**. After **10 minutes** of driving, at the highway on-ramp,
# it predicts **18 more**. The notes make the key observation: at that moment the app already
# has a better estimate of the whole trip, $10 + 18 = 28$ minutes, without waiting to arrive.
#
# In RL terms a waypoint is a state, the minutes of a leg are the "reward" $R_{t+1}$ (a cost here;
# the sign does not matter for prediction), $\gamma = 1$, and the predicted remaining time is the
# value $V(S_t)$. Let the trip go on: the bridge is jammed, so the second leg takes 12 minutes,
# and so on. Our full trip, with the app's predictions of the remaining time at each waypoint:
#
# | waypoint | pickup | on-ramp | bridge | exit | arrived |
# |---|---|---|---|---|---|
# | minutes of the leg that starts here | 10 | 12 | 9 | 5 | |
# | predicted remaining time $V(S_t)$ | 30 | 18 | 10 | 3 | 0 |
# | predicted total (elapsed + remaining) | 30 | 28 | 32 | 34 | 36 |
#
# The two methods disagree on what each prediction should have been:
#
# * **Monte Carlo target**: the remaining time that actually followed, $G_t = R_{t+1} + R_{t+2} + \dots$
#   It is only known at arrival.
# * **TD target**: the next leg plus the next prediction, $R_{t+1} + \gamma V(S_{t+1})$. It is known
#   one leg later. The gap to the current prediction is the **TD error**
#   $\delta_t = R_{t+1} + \gamma V(S_{t+1}) - V(S_t)$; at pickup it is $10 + 18 - 30 = -2$.
#
# Both update with a step size $\alpha$: $V(S_t) \leftarrow V(S_t) + \alpha\,(\text{target} - V(S_t))$.

# %%
WAYPOINTS = ["pickup", "on-ramp", "bridge", "exit", "arrived"]
leg_minutes = np.array([10.0, 12.0, 9.0, 5.0])          # R_1 .. R_4
predicted = np.array([30.0, 18.0, 10.0, 3.0, 0.0])      # V(S_0) .. V(S_4); arrival is terminal
arrived = np.array([False, False, False, True])

G = discounted_returns(leg_minutes, gamma=1.0, dones=arrived)
delta = td_errors(leg_minutes, predicted, gamma=1.0, dones=arrived)
mc_target, td_target = G, leg_minutes + predicted[1:]
for t in range(4):
    print(f"{WAYPOINTS[t]:>8}: predicted {predicted[t]:4.0f}   MC target {mc_target[t]:4.0f} (error {mc_target[t] - predicted[t]:+3.0f})"
          f"   TD target {td_target[t]:4.0f} (TD error {delta[t]:+3.0f})")

assert td_target[0] == 28 and delta[0] == -2          # the notes' numbers
# The MC error is the sum of the TD errors that follow: the intermediate predictions cancel.
np.testing.assert_allclose(G - predicted[:4], discounted_returns(delta, gamma=1.0, dones=arrived))
print("MC error at pickup = sum of the TD errors:", G[0] - predicted[0], "=", " + ".join(f"({d:+.0f})" for d in delta))

# %% [markdown]
# The last assert is worth a line of algebra. With $V$ held fixed,
#
# $$G_t - V(S_t) = \delta_t + \gamma \delta_{t+1} + \gamma^2 \delta_{t+2} + \dots$$
#
# because each $\gamma V(S_{t+1})$ added by one TD error is subtracted by the next. Monte Carlo
# makes one update with the total surprise at the end; TD spreads it over the trip as it happens.
# At pickup the first TD update pulls the 30 *down* towards 28, yet the trip took 36: TD trusted the
# on-ramp prediction, which was wrong. That is TD's bias. Monte Carlo's target is the truth of this
# one trip, but trips vary: that is its variance. The figure draws both sets of updates on the
# predicted totals (Sutton and Barto draw the same picture for driving home, their Figure 6.1).

# %%
elapsed = np.concatenate([[0.0], np.cumsum(leg_minutes)])
predicted_total = elapsed + predicted                     # what the app would say the whole trip takes
x = np.arange(5)
fig = make_subplots(rows=1, cols=2, subplot_titles=["Monte Carlo: towards the actual total", "TD: towards the next prediction"])
for col, target_total in ((1, np.full(4, predicted_total[-1])), (2, predicted_total[1:])):
    fig.add_trace(go.Scatter(x=x, y=predicted_total, mode="lines+markers", name="predicted total",
                             line=dict(color="black"), showlegend=col == 1), row=1, col=col)
    for t in range(4):
        fig.add_annotation(x=t, y=target_total[t], ax=t, ay=predicted_total[t], xref=f"x{col}", yref=f"y{col}",
                           axref=f"x{col}", ayref=f"y{col}", showarrow=True, arrowhead=2, arrowwidth=2,
                           arrowcolor="firebrick" if col == 1 else "royalblue")
    fig.update_xaxes(tickvals=x, ticktext=WAYPOINTS, row=1, col=col)
    fig.update_yaxes(title="predicted total trip time (min)", range=[25, 38], row=1, col=col)
fig.update_layout(width=900, height=380, title="One trip, two ways to correct the predictions")
fig.show()

# %% [markdown]
# ## 2. Bias and variance of the targets, measured
#
# One trip proves nothing about averages, so let us sample many. Each leg's duration is random
# (a gamma distribution with the means and spreads below).
# The true expected remaining times $v(s)$ follow from the means. The app's predictions are the
# table's: they underestimate every remaining time.
#
# Between TD and MC lies the **n-step target**: $n$ real legs, then the prediction,
#
# $$G^{(n)}_t = R_{t+1} + \gamma R_{t+2} + \dots + \gamma^{n-1} R_{t+n} + \gamma^n V(S_{t+n}).$$
#
# $n = 1$ is the TD target; here $n = 4$ reaches arrival and is the MC target. At pickup, with
# $V$ the app's predictions,
#
# * **bias** $= \mathbb{E}[G^{(n)}_0] - v(\text{pickup}) = V(S_n) - v(S_n)$: the error of the prediction
#   we bootstrap from, which shrinks as $n$ grows and vanishes for MC;
# * **variance** $= \mathrm{Var}[G^{(n)}_0]$ = the sum of the variances of the $n$ legs driven, which grows with $n$.
#
# `n_step_returns` computes these targets for all sampled trips at once; we measure their bias and
# variance and check them against the formulas.

# %%
leg_mean = np.array([10.0, 11.0, 8.0, 5.0])
leg_std = np.array([2.0, 3.0, 4.0, 2.0])
v_trip = np.concatenate([np.cumsum(leg_mean[::-1])[::-1], [0.0]])     # true remaining time: 34 24 13 5 0
app_error = predicted - v_trip                                         # -4 -6 -3 -2 0

n_trips = 20_000 if FAST else 200_000
shape, scale = (leg_mean / leg_std) ** 2, leg_std**2 / leg_mean       # gamma distribution with that mean and std
legs = rng.gamma(shape, scale, size=(n_trips, 4))                      # (trips, T = 4)
dones = np.zeros((n_trips, 4), dtype=bool)
dones[:, -1] = True
ns = np.arange(1, 5)

measured = {}
for quality, factor in (("a perfect app (V = v)", 0.0), ("our app", 1.0), ("an app twice as wrong", 2.0)):
    values = np.broadcast_to(v_trip + factor * app_error, (n_trips, 5))   # (trips, T + 1)
    targets = np.stack([n_step_returns(legs, values, 1.0, n, dones)[:, 0] for n in ns])   # (n, trips) at pickup
    bias, var = targets.mean(axis=1) - v_trip[0], targets.var(axis=1)
    measured[quality] = (bias, var)
    # The formulas: bias = factor * app error at S_n, variance = sum of the first n legs' variances.
    se_bias = np.sqrt(var / n_trips)
    assert np.all(np.abs(bias - factor * app_error[ns]) < 5 * se_bias + 1e-12)
    np.testing.assert_allclose(var, np.cumsum(leg_std**2), rtol=0.05)

for quality, (bias, var) in measured.items():
    print(f"{quality:>22}:  " + "   ".join(f"n={n}: bias {b:+5.2f}, var {v:5.1f}, MSE {b * b + v:6.1f}"
                                            for n, b, v in zip(ns, bias, var)))

# %%
fig = make_subplots(rows=1, cols=2, subplot_titles=["our app: bias^2 and variance of the target", "mean squared error of the target"])
bias, var = measured["our app"]
fig.add_trace(go.Bar(x=ns, y=bias**2, name="bias^2"), row=1, col=1)
fig.add_trace(go.Bar(x=ns, y=var, name="variance"), row=1, col=1)
for quality, (b, v) in measured.items():
    fig.add_trace(go.Scatter(x=ns, y=b**2 + v, mode="lines+markers", name=f"MSE, {quality}"), row=1, col=2)
fig.update_xaxes(title="n (1 = TD, 4 = Monte Carlo)", tickvals=ns)
fig.update_yaxes(title="minutes^2")
fig.update_layout(barmode="stack", width=950, height=400)
fig.show()

# %% [markdown]
# What the numbers say:
#
# * The variance grows with every real leg in the target; TD's target (n = 1) only carries the
#   first leg's noise, Monte Carlo's carries all of it.
# * The bias is the error of the prediction bootstrapped from: large for TD when the app is
#   wrong, zero for Monte Carlo whatever the app says.
# * Which target is best depends on how good the predictions are. With a perfect app TD's target
#   is the best by far; with ours, two real legs and then the prediction (n = 2) is best; with an
#   app twice as wrong as ours, Monte Carlo's. Learning makes the predictions better as it goes,
#   which is why bootstrapping pays off more and more.
#
# Our notes summarise the trade-off in a table that calls Monte Carlo's bias "small". It is
# **zero**: $\mathbb{E}[G_t \mid S_t = s] = V_\pi(s)$ is the definition of $V_\pi$. TD's bias is not
# a fixed property of the method either: it is the error of the current estimate it bootstraps
# from, and it disappears as $V$ approaches $V_\pi$. (The notes also place TD "between Monte Carlo and
# one-step updates"; TD(0) *is* the one-step update, and n-step TD is what lies in between.)

# %%
assert np.all(np.diff(measured["our app"][1]) > 0), "variance must grow with n"
assert np.all(np.diff(np.abs(measured["our app"][0])) < 0), "|bias| must shrink with n"
mse = {q: b**2 + v for q, (b, v) in measured.items()}
assert np.argmin(mse["a perfect app (V = v)"]) == 0, "with a perfect app, TD's target should be best"
assert np.argmin(mse["our app"]) == 1, "with our app, the 2-step target should be best"
assert np.argmin(mse["an app twice as wrong"]) == 3, "with a bad app, Monte Carlo's target should be best"

# %% [markdown]
# ## 3. The random walk (Sutton and Barto, Example 6.2)
#
# Five states A to E in a row, with a terminal state at each end. Every episode starts in C and
# steps left or right with probability 1/2. Leaving on the right pays +1, everything else pays 0,
# and $\gamma = 1$. So $V_\pi(s)$ is the probability of leaving on the right from $s$.
#
# As a `TabularMDP` (states 0 and 6 are the terminals, one action: "walk"), chapter 1's exact
# evaluation gives the true values, $1/6, 2/6, \dots, 5/6$:

# %%
walk = random_walk(5)
v_true = evaluate_policy(walk, np.ones((7, 1)))
print("true values of A..E:", v_true[1:6].round(4), " x 6 =", (6 * v_true[1:6]).round(6))
np.testing.assert_allclose(v_true, random_walk_values(5), atol=1e-12)
np.testing.assert_allclose(v_true[1:6], np.arange(1, 6) / 6)

# %% [markdown]
# The learners never see `walk.P`; they see episodes. Because the policy is fixed, the episodes do
# not depend on what is learned, so `sample_random_walk` draws all of them up front, every walk
# taking its step in the same array operation, as arrays of shape (runs, episodes, time):

# %%
NAMES = "LABCDER"   # L and R are the terminal ends
n_runs, n_episodes = 100, 100
episodes = sample_random_walk(5, (n_runs, n_episodes), seed=SEED)
print("states:", episodes.states.shape, " rewards:", episodes.rewards.shape, " longest episode:", episodes.states.shape[-1] - 1, "steps")
T0 = int(episodes.lengths[0, 0])
print("run 0, episode 0:", " -> ".join(NAMES[s] for s in episodes.states[0, 0, : T0 + 1]),
      f" reward {episodes.rewards[0, 0, T0 - 1]:.0f}")
print(f"mean episode length: {episodes.lengths.mean():.2f} steps (theory: 3 x 3 = 9 from C)")
assert abs(episodes.lengths.mean() - 9) < 0.5

# %% [markdown]
# ## 4. TD(0) on one run
#
# The TD(0) update, applied after every step, is the whole algorithm:
#
# ```
# for each episode:
#     for each step (S, R, S', done):
#         V(S) <- V(S) + alpha * (R + gamma * (1 - done) * V(S') - V(S))
# ```
#
# The $(1 - \text{done})$ factor says that nothing follows the last reward of an episode. (Here
# $V$ of a terminal state is 0 anyway, but where several episodes are packed into one array, the
# state after a done belongs to the next episode, and bootstrapping from it is a classic bug.)
# Starting from $V = 0.5$ in every state, as the book does, here is run 0 with $\alpha = 0.1$,
# written exactly as the pseudocode:

# %%
alpha, gamma = 0.1, 1.0
V0 = np.r_[0.0, np.full(5, 0.5), 0.0]
V = V0.copy()
snapshots = {0: V.copy()}
for e in range(n_episodes):
    for t in range(int(episodes.lengths[0, e])):
        s, r = episodes.states[0, e, t], episodes.rewards[0, e, t]
        s_next, done = episodes.states[0, e, t + 1], episodes.dones[0, e, t]
        V[s] += alpha * (r + gamma * (1 - done) * V[s_next] - V[s])
    if e + 1 in (1, 10, 100):
        snapshots[e + 1] = V.copy()

fig = go.Figure()
for e, V_e in snapshots.items():
    fig.add_trace(go.Scatter(x=list("ABCDE"), y=V_e[1:6], mode="lines+markers", name=f"after {e} episodes"))
fig.add_trace(go.Scatter(x=list("ABCDE"), y=v_true[1:6], mode="lines", line=dict(color="black", dash="dash"), name="true values"))
fig.update_layout(title="TD(0), alpha = 0.1, one run (the book's Figure 6.2, left)", xaxis_title="state",
                  yaxis_title="estimated value", width=650, height=400)
fig.show()

# The vectorized learner, given the same episodes, does exactly the same updates in run 0.
np.testing.assert_allclose(td0_prediction(episodes, alpha, V0)[0, -1], V)
print("after 1 episode:   ", snapshots[1][1:6].round(3))
print("after 100 episodes:", V[1:6].round(3), " true:", v_true[1:6].round(3))
assert np.sum(snapshots[1] != V0) == 1, "after one episode only the state next to the exit moves"

# %% [markdown]
# After the first episode only one value has moved: the state next to the exit the walk took.
# TD only learns from a state's successor, so information travels back one step per visit. A
# single run stays noisy: with $\alpha = 0.1$ each value keeps chasing the latest outcomes. Averaging
# over runs, next, shows the trend.
#
# ## 5. Learning curves: 100 runs at once (the book's Figure 6.2, right)
#
# `td0_prediction` and `mc_prediction` replay the episodes of all runs, for several step sizes,
# in one pass: the state of every (step size, run) pair lives in one array of shape
# (step sizes, runs, S), and each time step updates all of them with one indexed assignment.
# Constant-$\alpha$ Monte Carlo is the same loop with the target $G_t$ instead of
# $R_{t+1} + \gamma V(S_{t+1})$. We plot the RMS error over the five states, averaged over the
# 100 runs, after each episode.

# %%
td_alphas = np.array([0.05, 0.1, 0.15])
mc_alphas = np.array([0.01, 0.02, 0.03, 0.04])
V_td = td0_prediction(episodes, td_alphas, V0)         # (alphas, runs, episodes + 1, S)
V_mc = mc_prediction(episodes, mc_alphas, V0)
rms_td = rms_error(V_td, v_true, states=slice(1, 6))   # (alphas, runs, episodes + 1)
rms_mc = rms_error(V_mc, v_true, states=slice(1, 6))
curve_td, curve_mc = rms_td.mean(axis=1), rms_mc.mean(axis=1)

fig = go.Figure()
for a, curve in zip(td_alphas, curve_td):
    fig.add_trace(go.Scatter(y=curve, mode="lines", name=f"TD, alpha = {a}", line=dict(dash="solid")))
for a, curve in zip(mc_alphas, curve_mc):
    fig.add_trace(go.Scatter(y=curve, mode="lines", name=f"MC, alpha = {a}", line=dict(dash="dot")))
fig.update_layout(title=f"Random walk: RMS error averaged over {n_runs} runs", xaxis_title="episodes",
                  yaxis_title="RMS error over A..E", width=750, height=430)
fig.show()

start_rms = np.sqrt(np.mean((0.5 - v_true[1:6]) ** 2))
print(f"RMS error of the initial guess: {start_rms:.4f} (= sqrt(1/18))")
for name, alphas, curves, rms in (("TD", td_alphas, curve_td, rms_td), ("MC", mc_alphas, curve_mc, rms_mc)):
    for a, curve, per_run in zip(alphas, curves, rms):
        print(f"{name} alpha = {a:.2f}: after 100 episodes {curve[-1]:.3f} +- {per_run[:, -1].std() / np.sqrt(n_runs):.3f}")
np.testing.assert_allclose(curve_td[:, 0], np.sqrt(1 / 18))

# %% [markdown]
# The book's observations hold in our measurement (the asserts check them):
#
# * TD is better than MC on this task: its best curve ends well below MC's best, and averaged over
#   the 100 episodes every TD curve lies below every MC curve.
# * A larger step size learns faster but ends noisier: with $\alpha = 0.15$ TD's error bottoms out
#   early and then *rises* to a plateau set by the noise of its updates (the book's exercise 6.5).

# %%
best_td, best_mc = curve_td[:, -1].min(), curve_mc[:, -1].min()
assert best_td < best_mc - 0.02, f"TD's best final error {best_td:.3f} vs MC's {best_mc:.3f}"
assert curve_td[:, 1:].mean(axis=1).max() < curve_mc[:, 1:].mean(axis=1).min()
k_min = int(np.argmin(curve_td[2]))
rise = rms_td[2, :, -1] - rms_td[2, :, k_min]        # per run, paired
print(f"TD, alpha = 0.15: lowest at episode {k_min} ({curve_td[2, k_min]:.3f}), "
      f"then {curve_td[2, -1]:.3f} at 100: up by {rise.mean():.3f} +- {rise.std() / np.sqrt(n_runs):.3f}")
assert k_min < 60 and rise.mean() > 2 * rise.std() / np.sqrt(n_runs)

# %% [markdown]
# ## 6. Bias and variance of the estimates, measured
#
# Why is TD better here? Run both methods with the **same** step sizes on many independent runs
# and split the mean squared error of the estimates after 100 episodes, state by state, into
#
# $$\underbrace{\mathbb{E}\big[(V(s) - v(s))^2\big]}_{\text{MSE}} = \underbrace{\big(\mathbb{E}[V(s)] - v(s)\big)^2}_{\text{bias}^2} + \underbrace{\mathrm{Var}[V(s)]}_{\text{variance}},$$
#
# with the expectation over runs (averaged over the five states).

# %%
n_runs_bv = 200 if FAST else 1000
alphas_bv = np.array([0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2])
episodes_bv = sample_random_walk(5, (n_runs_bv, 100), seed=SEED + 1)
decomposition = {}
for name, learner in (("TD(0)", td0_prediction), ("Monte Carlo", mc_prediction)):
    V_end = learner(episodes_bv, alphas_bv, V0)[:, :, -1, 1:6]              # (alphas, runs, 5)
    bias2 = ((V_end.mean(axis=1) - v_true[1:6]) ** 2).mean(axis=-1)          # (alphas,)
    variance = V_end.var(axis=1).mean(axis=-1)
    decomposition[name] = (bias2, variance)

fig = make_subplots(rows=1, cols=2, subplot_titles=["variance across runs", "bias^2"])
for name, (bias2, variance) in decomposition.items():
    dash = "solid" if name == "TD(0)" else "dot"
    fig.add_trace(go.Scatter(x=alphas_bv, y=variance, mode="lines+markers", name=f"{name}: variance", line=dict(dash=dash)), row=1, col=1)
    fig.add_trace(go.Scatter(x=alphas_bv, y=bias2, mode="lines+markers", name=f"{name}: bias^2", line=dict(dash=dash)), row=1, col=2)
fig.update_xaxes(title="step size alpha")
fig.update_yaxes(type="log", exponentformat="power")
fig.update_layout(title=f"After 100 episodes, over {n_runs_bv} runs", width=950, height=420)
fig.show()

ratio = decomposition["Monte Carlo"][1] / decomposition["TD(0)"][1]
for a, r, (b_td, b_mc) in zip(alphas_bv, ratio, zip(decomposition["TD(0)"][0], decomposition["Monte Carlo"][0])):
    print(f"alpha = {a:.2f}: MC's variance is {r:5.1f}x TD's;  bias^2: TD {b_td:.5f}, MC {b_mc:.5f}")
assert np.all(ratio > 5), "MC's estimates should spread much more than TD's at the same step size"
assert np.all(decomposition["TD(0)"][0][:2] > 2 * decomposition["Monte Carlo"][0][:2]), "small alpha: TD should keep more of the initial bias"
assert np.all(np.diff(decomposition["TD(0)"][1]) > 0) and np.all(np.diff(decomposition["Monte Carlo"][1]) > 0)

# %% [markdown]
# * At every step size, Monte Carlo's estimates spread **about 10 to 30 times more** across runs
#   than TD's: each MC update carries the noise of a whole episode, each TD update the noise of one step.
# * Both methods start from the same biased guess (0.5 everywhere). With small step sizes 100
#   episodes are not enough to forget it, and TD, which passes information back one state per
#   visit, forgets it more slowly than MC: its bias is the larger on the left of the right panel.
#   (At the largest step sizes TD's bias$^2$ creeps up again, to about 0.002: still small next to
#   its variance.)
# * A larger $\alpha$ forgets the initial guess faster (less bias) but averages over fewer updates
#   (more variance): the step size is itself a bias-variance knob.
#
# On this small task the variance dominates, so TD wins. The ride showed the other side: where the
# estimates bootstrapped from are badly wrong, the bias can dominate.
#
# ## 7. n-step TD: the whole range in between
#
# The n-step target uses $n$ real rewards before it bootstraps. `n_step_returns(rewards, values,
# gamma, n, dones)` computes it for every step of a batch of sequences; at the end of an episode
# the window is cut short and nothing is bootstrapped. Checked against a plain loop:

# %%
def n_step_returns_loop(rewards, values, gamma, n, dones):
    """One sequence, one step at a time: sum up to n rewards, stop at a done, then bootstrap."""
    T = len(rewards)
    out = np.zeros(T)
    for t in range(T):
        g, k, ended = 0.0, 0, False
        while k < n and t + k < T:
            g += gamma**k * rewards[t + k]
            if dones[t + k]:
                ended = True
                break
            k += 1
        out[t] = g if ended else g + gamma**k * values[t + k]
    return out


r_test, v_test, d_test = rng.normal(size=(3, 12)), rng.normal(size=(3, 13)), rng.random((3, 12)) < 0.2
for n in (1, 2, 3, 5, 12, 20):
    batch = n_step_returns(r_test, v_test, 0.9, n, d_test)
    for b in range(3):
        np.testing.assert_allclose(batch[b], n_step_returns_loop(r_test[b], v_test[b], 0.9, n, d_test[b]))
print("n_step_returns agrees with the loop for n = 1, 2, 3, 5, 12, 20")

# %% [markdown]
# Online n-step TD (Sutton and Barto, section 7.1) updates $V(S_t)$ as soon as $R_{t+n}$ arrives,
# with the values as they are at that moment. Sutton and Barto's Figure 7.2 runs it on a larger
# walk, 19 states with $-1$ for leaving on the left and $+1$ on the right (true values
# $-0.9, -0.8, \dots, 0.9$), from $V = 0$. Its measure is the RMS error over the 19 states, averaged
# over the first 10 episodes and over 100 runs, as a function of $\alpha$, one curve per $n$.
# `n_step_td_prediction` runs all step sizes and runs of one $n$ at once.

# %%
n_runs_19 = 100
ns_19 = [1, 2, 4, 8, 16, 64, 512] if FAST else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
# Large n needs small step sizes, so the grid is finer near 0.
alphas_19 = np.r_[0.01, 0.02, 0.04, 0.07, np.linspace(0.1, 1.0, 10 if FAST else 19)]
v_true_19 = random_walk_values(19, left_reward=-1.0, right_reward=1.0)
episodes_19 = sample_random_walk(19, (n_runs_19, 10), seed=SEED + 2, left_reward=-1.0)
error_19 = {}
for n in tqdm(ns_19, desc="n-step TD"):
    V_hist = n_step_td_prediction(episodes_19, n, alphas_19, np.zeros(21))          # (alphas, runs, 11, S)
    error_19[n] = rms_error(V_hist[:, :, 1:], v_true_19, states=slice(1, 20)).mean(axis=(1, 2))

fig = go.Figure()
for n, err in error_19.items():
    fig.add_trace(go.Scatter(x=alphas_19, y=err, mode="lines", name=f"n = {n}"))
fig.update_layout(title="n-step TD on the 19-state walk (the book's Figure 7.2)", xaxis_title="alpha",
                  yaxis_title="RMS error, first 10 episodes", yaxis_range=[0.2, 0.6], width=750, height=450)
fig.show()
best = {n: err.min() for n, err in error_19.items()}
for n, b in best.items():
    print(f"n = {n:3d}: lowest error {b:.3f} at alpha = {alphas_19[np.argmin(error_19[n])]:.2f}")

# %% [markdown]
# Neither end wins. One-step TD (n = 1) is slow: information crawls back one state per visit.
# Very large n is Monte Carlo, whose noisy targets force a small $\alpha$. An intermediate n, around
# 4 to 8 here as in the book, does best: enough real reward to move information quickly, little
# enough to keep the target's variance down. The asserts measure it. Large n also needs a small
# step size, and its error rises steeply with $\alpha$: the variance of the target again.

# %%
n_best = min(best, key=best.get)
print(f"the best n is {n_best}")
assert 2 <= n_best <= 16
assert best[n_best] < best[1] - 0.03 and best[n_best] < best[512] - 0.1
assert alphas_19[np.argmin(error_19[512])] < alphas_19[np.argmin(error_19[1])]

# %% [markdown]
# ## What to take away
#
# * Monte Carlo moves $V(S_t)$ towards the return $G_t$; TD(0) towards $R_{t+1} + \gamma V(S_{t+1})$;
#   n-step TD towards $n$ rewards plus $\gamma^n V(S_{t+n})$. The MC error is the sum of the TD errors.
# * The MC target is unbiased but carries the noise of a whole episode. The TD target carries one
#   step's noise plus the error of the estimate it bootstraps from. We measured both.
# * Which wins depends on the task and on how good the estimates are; in between, n-step TD often
#   beats both ends. Chapter 7's GAE turns the same trade-off into a single knob, $\lambda$.
# * Nothing stops at an episode end: every target multiplies the bootstrap by $(1 - \text{done})$.
#
# Next: **exercise 3** (`exercises/ex03_mc_vs_td.ipynb`) has you write the batched TD(0) update and
# n-step returns. Chapter 4 turns prediction into control: SARSA and Q-learning learn $Q$ and act on it.
