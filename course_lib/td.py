"""Tabular TD control: SARSA, Q-learning and Expected SARSA, many independent runs at once.

The learners keep one action-value table per run, ``Q`` of shape (N, S, A), and
advance all N runs together: every step is a handful of array operations over
the run axis, so 100 runs cost little more than one (Sutton and Barto 2018,
sections 6.4 to 6.6, give the one-run pseudocode these follow line by line).

The update of every method is the same move towards a target,

    Q(S, A) <- Q(S, A) + alpha * (target - Q(S, A))          (``td_update``)

and the methods differ only in the target (``sarsa_target``,
``q_learning_target``, ``expected_sarsa_target``). The target kernels take the
next state's row of action values, ``q_next`` of shape (..., A), so the same
functions serve a table (``Q[runs, s_next]``) and a Q-network's output
(chapter 5); they accept numpy arrays or torch tensors.

Random numbers. Each learner draws from one ``numpy.random.Generator`` seeded
with ``seed``, in a fixed order documented on ``epsilon_greedy`` and on the
learners, so that a plain loop over runs drawing the same numbers reproduces
every run exactly (the tests do this).
"""

from __future__ import annotations

import numpy as np

from .mdp import TabularMDP
from .returns import check_gamma

__all__ = [
    "epsilon_greedy",
    "epsilon_greedy_probs",
    "sarsa_target",
    "q_learning_target",
    "expected_sarsa_target",
    "td_update",
    "sarsa",
    "q_learning",
    "expected_sarsa",
    "greedy_path",
]


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _check_epsilon(epsilon) -> float:
    epsilon = float(epsilon)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1]; got {epsilon}")
    return epsilon


# ---------------------------------------------------------------- behaviour policy
def epsilon_greedy(q, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Epsilon-greedy actions for a batch of action-value rows; ties broken at random.

    With probability ``epsilon`` the action is uniform over all A actions (the
    greedy one included), otherwise it is an argmax of ``q``, chosen uniformly
    among tied maxima (with a zero-initialised table everything is tied at first).

    q : array (..., A), the action values of the current states.
    epsilon : float in [0, 1].
    rng : numpy Generator. Draws, in this order: ``u = rng.random(batch)`` and
        ``tie = rng.random(batch + (A,))``, where batch = q.shape[:-1]. The action is
        argmax(tie) (uniform over all actions) where u < epsilon, else the maximal
        entry of q with the largest ``tie``.

    Returns int64 array of shape q.shape[:-1].

    >>> epsilon_greedy(np.array([[0.0, 2.0, 1.0], [5.0, 4.0, -1.0]]), 0.0, np.random.default_rng(0))
    array([1, 0])
    """
    epsilon = _check_epsilon(epsilon)
    q = np.asarray(q)
    if q.ndim < 1 or q.shape[-1] == 0:
        raise ValueError(f"q must have shape (..., A) with A >= 1; got shape {q.shape}")
    return _epsilon_greedy(q, epsilon, rng)


def _epsilon_greedy(q: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """``epsilon_greedy`` on arguments already checked (the learners' hot loop)."""
    u = rng.random(q.shape[:-1])
    tie = rng.random(q.shape)                                 # iid scores: their argmax is a uniform action
    is_max = q == q.max(axis=-1, keepdims=True)               # (..., A)
    greedy = np.argmax(np.where(is_max, tie, -1.0), axis=-1)  # uniform among the maxima
    return np.where(u < epsilon, np.argmax(tie, axis=-1), greedy)


def epsilon_greedy_probs(q, epsilon: float):
    """pi(a | s) of the epsilon-greedy policy: epsilon / A everywhere, plus (1 - epsilon) shared by the maxima.

    q : array or tensor (..., A). Returns the same type and shape; each row sums to 1.

    >>> epsilon_greedy_probs(np.array([1.0, 3.0, 3.0, 0.0]), 0.2)
    array([0.05, 0.45, 0.45, 0.05])
    """
    epsilon = _check_epsilon(epsilon)
    if q.shape[-1] == 0:
        raise ValueError(f"q must have shape (..., A) with A >= 1; got shape {tuple(q.shape)}")
    A = q.shape[-1]
    if _is_torch(q):
        is_max = (q == q.max(dim=-1, keepdim=True).values).to(q.dtype)
        n_max = is_max.sum(dim=-1, keepdim=True)
    else:
        q = np.asarray(q, dtype=np.float64)
        is_max = (q == q.max(axis=-1, keepdims=True)).astype(np.float64)
        n_max = is_max.sum(axis=-1, keepdims=True)
    return epsilon / A + (1.0 - epsilon) * is_max / n_max


# ---------------------------------------------------------------- targets
def _not_done(dones, like):
    if _is_torch(like):
        return (~dones.bool()).to(like.dtype)
    return 1.0 - np.asarray(dones, dtype=np.float64)


def _check_target_args(rewards, q_next, dones):
    if q_next.ndim < 1 or tuple(q_next.shape[:-1]) != tuple(rewards.shape):
        raise ValueError(
            f"q_next must have shape rewards.shape + (A,) = {tuple(rewards.shape)} + (A,); got shape {tuple(q_next.shape)}"
        )
    if tuple(dones.shape) != tuple(rewards.shape):
        raise ValueError(f"dones must have the shape of rewards {tuple(rewards.shape)}; got shape {tuple(dones.shape)}")


def _as_arrays(rewards, q_next, dones):
    if _is_torch(q_next):
        return rewards, q_next, dones
    return np.asarray(rewards, dtype=np.float64), np.asarray(q_next, dtype=np.float64), np.asarray(dones)


def sarsa_target(rewards, q_next, next_actions, dones, gamma: float):
    """SARSA's target: y = R + gamma * (1 - done) * Q(S', A'), with A' the action actually taken next.

    rewards, dones : shape (...,).  q_next : shape (..., A), the row Q(S', .).
    next_actions : int shape (...,), the action the behaviour policy chose in S'.
    A done transition ends the episode: S' is terminal and nothing is bootstrapped.

    >>> sarsa_target(np.array([-1.0, -1.0]), np.array([[2.0, 5.0], [2.0, 5.0]]),
    ...              np.array([0, 0]), np.array([False, True]), gamma=0.5)
    array([ 0., -1.])
    """
    gamma = check_gamma(gamma)
    rewards, q_next, dones = _as_arrays(rewards, q_next, dones)
    _check_target_args(rewards, q_next, dones)
    if _is_torch(q_next):
        taken = q_next.gather(-1, next_actions.long().unsqueeze(-1)).squeeze(-1)
        return rewards + gamma * _not_done(dones, q_next) * taken
    next_actions = np.asarray(next_actions)
    if next_actions.shape != rewards.shape:
        raise ValueError(f"next_actions must have the shape of rewards {rewards.shape}; got shape {next_actions.shape}")
    if next_actions.size and (next_actions.min() < 0 or next_actions.max() >= q_next.shape[-1]):
        raise ValueError(f"next_actions must lie in [0, {q_next.shape[-1]}); got {next_actions.min()}..{next_actions.max()}")
    return _sarsa_target(rewards, q_next, next_actions.astype(np.int64), dones.astype(bool), gamma)


def _sarsa_target(rewards, q_next, next_actions, dones, gamma):
    taken = np.take_along_axis(q_next, next_actions[..., None], axis=-1)[..., 0]
    return rewards + gamma * np.where(dones, 0.0, taken)


def q_learning_target(rewards, q_next, dones, gamma: float):
    """Q-learning's (and DQN's) target: y = R + gamma * (1 - done) * max_a' Q(S', a').

    rewards, dones : shape (...,).  q_next : shape (..., A), the row Q(S', .) (in DQN,
    the target network's output for the next observations). Numpy in, numpy out;
    torch in, torch out.

    >>> q_learning_target(np.array([-1.0, -1.0]), np.array([[2.0, 5.0], [2.0, 5.0]]),
    ...                   np.array([False, True]), gamma=0.5)
    array([ 1.5, -1. ])
    """
    gamma = check_gamma(gamma)
    rewards, q_next, dones = _as_arrays(rewards, q_next, dones)
    _check_target_args(rewards, q_next, dones)
    if _is_torch(q_next):
        return rewards + gamma * _not_done(dones, q_next) * q_next.max(dim=-1).values
    return _q_learning_target(rewards, q_next, dones.astype(bool), gamma)


def _q_learning_target(rewards, q_next, dones, gamma):
    return rewards + gamma * np.where(dones, 0.0, q_next.max(axis=-1))


def expected_sarsa_target(rewards, q_next, dones, gamma: float, epsilon: float):
    """Expected SARSA's target: y = R + gamma * (1 - done) * sum_a' pi(a' | S') Q(S', a').

    pi is the epsilon-greedy policy of ``q_next`` (``epsilon_greedy_probs``). With
    epsilon = 0 this is Q-learning's target. Shapes as in ``q_learning_target``.

    >>> expected_sarsa_target(np.array([-1.0]), np.array([[2.0, 6.0]]), np.array([False]), 1.0, 0.5)
    array([4.])
    """
    gamma = check_gamma(gamma)
    rewards, q_next, dones = _as_arrays(rewards, q_next, dones)
    _check_target_args(rewards, q_next, dones)
    if _is_torch(q_next):
        expected = (epsilon_greedy_probs(q_next, epsilon) * q_next).sum(-1)
        return rewards + gamma * _not_done(dones, q_next) * expected
    return _expected_sarsa_target(rewards, q_next, dones.astype(bool), gamma, _check_epsilon(epsilon))


def _expected_sarsa_target(rewards, q_next, dones, gamma, epsilon):
    expected = (epsilon_greedy_probs(q_next, epsilon) * q_next).sum(-1)
    return rewards + gamma * np.where(dones, 0.0, expected)


def td_update(Q: np.ndarray, states, actions, targets, alpha) -> np.ndarray:
    """One TD step per run: Q[n, s_n, a_n] += alpha_n * (y_n - Q[n, s_n, a_n]); returns a new table.

    Q : (N, S, A), one table per run.  states, actions : int (N,).  targets : (N,).
    alpha : float or (N,) (a zero step size leaves that run's table as it is).

    >>> td_update(np.zeros((1, 2, 2)), np.array([1]), np.array([0]), np.array([4.0]), 0.5)[0]
    array([[0., 0.],
           [2., 0.]])
    """
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 3:
        raise ValueError(f"Q must have shape (N, S, A); got shape {Q.shape}")
    N = Q.shape[0]
    states, actions = np.asarray(states), np.asarray(actions)
    targets = np.asarray(targets, dtype=np.float64)
    for name, value in (("states", states), ("actions", actions), ("targets", targets)):
        if value.shape != (N,):
            raise ValueError(f"{name} must have shape (N,) = ({N},); got shape {value.shape}")
    alpha_arr = np.asarray(alpha, dtype=np.float64)
    if alpha_arr.shape not in ((), (N,)):
        raise ValueError(f"alpha must be a float or have shape (N,) = ({N},); got shape {alpha_arr.shape}")
    if np.any(alpha_arr < 0) or np.any(alpha_arr > 1):
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    out = Q.copy()
    _td_step_inplace(out, np.arange(N), states, actions, targets, alpha_arr)
    return out


def _td_step_inplace(Q, runs, states, actions, targets, alpha) -> None:
    """The update of ``td_update`` written into Q itself, arguments already checked (the learners' hot loop)."""
    Q[runs, states, actions] += alpha * (targets - Q[runs, states, actions])


# ---------------------------------------------------------------- learners
def _check_learner_args(mdp: TabularMDP, start: int, n_episodes: int, n_runs: int, alpha: float, epsilon: float, max_episode_steps: int):
    if not 0 <= int(start) < mdp.n_states or mdp.terminal[int(start)]:
        raise ValueError(f"start must be a non-terminal state in [0, {mdp.n_states}); got {start}")
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be >= 1; got {n_episodes}")
    if int(n_runs) < 1:
        raise ValueError(f"n_runs must be >= 1; got {n_runs}")
    if not 0.0 < float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in (0, 1]; got {alpha}")
    _check_epsilon(epsilon)
    if int(max_episode_steps) < 1:
        raise ValueError(f"max_episode_steps must be >= 1; got {max_episode_steps}")


def _td_control(method: str, mdp, start, n_episodes, n_runs, alpha, epsilon, seed, max_episode_steps):
    """The loop the three learners share. Runs advance in lock step; a run that has
    finished its episodes keeps stepping with a zero step size and records nothing.

    Per step, all N runs: sample S' from P[S, A] (by inverse CDF with u = rng.random(N);
    no draw when the MDP is deterministic); then for SARSA pick A' in S' (``epsilon_greedy``), update Q(S, A), and, if any
    episode ended, pick the first action of the next episode in ``start`` with the
    updated table (one more ``epsilon_greedy`` draw over all runs); for Q-learning and
    Expected SARSA update Q(S, A) first, then pick the next action in S' (or in
    ``start`` where the episode ended) with one ``epsilon_greedy`` draw.
    """
    _check_learner_args(mdp, start, n_episodes, n_runs, alpha, epsilon, max_episode_steps)
    N, E, start = int(n_runs), int(n_episodes), int(start)
    rng = np.random.default_rng(seed)
    deterministic = bool(np.all(mdp.P.max(axis=2) == 1.0))
    next_state = mdp.P.argmax(axis=2)                    # (S, A), the only successor when deterministic
    cum_P = np.cumsum(mdp.P, axis=2)                     # (S, A, S)
    gamma = mdp.gamma
    runs = np.arange(N)
    Q = np.zeros((N, mdp.n_states, mdp.n_actions))
    returns = np.zeros((N, E))
    episode = np.zeros(N, dtype=np.int64)                # episodes finished so far, per run
    G = np.zeros(N)                                      # return of the current episode so far
    discount = np.ones(N)                                # gamma ** t within the episode
    t = np.zeros(N, dtype=np.int64)                      # steps into the current episode
    S = np.full(N, start)
    A = _epsilon_greedy(Q[runs, S], epsilon, rng)
    learning = np.ones(N, dtype=bool)                    # runs that still have episodes to play
    step_alpha = np.full(N, float(alpha))                # alpha, or 0 once a run is done learning
    while learning.any():
        if deterministic:
            S_next = next_state[S, A]
        else:  # S' ~ P[S, A, :] by inverse CDF (min guards against round-off at the top)
            u = rng.random(N)
            S_next = np.minimum((u[:, None] >= cum_P[S, A]).sum(axis=1), mdp.n_states - 1)
        R = mdp.R[S, A]
        terminated = mdp.terminal[S_next]
        t += 1
        ended = terminated | (t >= max_episode_steps)     # a truncated episode still bootstraps
        any_ended = ended.any()
        q_next = Q[runs, S_next]                         # (N, A): Q(S', .) before the update
        # The public kernels check their arguments; here they are known to be right,
        # so the loop calls the same formulas unchecked (sarsa_target, q_learning_target, ...).
        if method == "sarsa":
            A_next = _epsilon_greedy(q_next, epsilon, rng)
            y = _sarsa_target(R, q_next, A_next, terminated, gamma)
        elif method == "q_learning":
            y = _q_learning_target(R, q_next, terminated, gamma)
        else:
            y = _expected_sarsa_target(R, q_next, terminated, gamma, epsilon)
        _td_step_inplace(Q, runs, S, A, y, step_alpha)   # td_update, in place
        if gamma == 1.0:
            G += R
        else:
            G += discount * R
            discount *= gamma
        if any_ended:
            record = ended & learning
            returns[runs[record], episode[record]] = G[record]
            episode += record
            G[ended], discount[ended], t[ended] = 0.0, 1.0, 0
            S_next = np.where(ended, start, S_next)
            learning = episode < E
            step_alpha = np.where(learning, alpha, 0.0)
        if method == "sarsa":
            if any_ended:  # the next episode's first action, chosen with the updated table
                A_next = np.where(ended, _epsilon_greedy(Q[runs, S_next], epsilon, rng), A_next)
        else:
            A_next = _epsilon_greedy(Q[runs, S_next], epsilon, rng)
        S, A = S_next, A_next
    return returns, Q


def sarsa(mdp: TabularMDP, start: int, n_episodes: int, n_runs: int = 1, alpha: float = 0.5,
          epsilon: float = 0.1, seed: int = 0, max_episode_steps: int = 100_000):
    """On-policy TD control (Sutton and Barto 2018, section 6.4), N independent runs at once.

    Every run starts each episode in ``start``, acts epsilon-greedily on its own Q
    (zero-initialised) and after each step moves Q(S, A) towards
    R + gamma * Q(S', A'), where A' is the action it will actually take next.

    Returns
    -------
    returns : (n_runs, n_episodes), the return sum_t gamma^t R_{t+1} of every
        episode as it was played (exploration included): the "online" return.
    Q : (n_runs, S, A), each run's table after its last episode.

    An episode longer than ``max_episode_steps`` is cut there (bootstrapping, not
    terminal). Random numbers: see ``_td_control``; same seed, same result.

    >>> from course_lib.mdp import cliff_walking, CLIFF_START
    >>> returns, Q = sarsa(cliff_walking(), CLIFF_START, n_episodes=3, n_runs=2, seed=0)
    >>> returns.shape, Q.shape
    ((2, 3), (2, 48, 4))
    """
    return _td_control("sarsa", mdp, start, n_episodes, n_runs, alpha, epsilon, seed, max_episode_steps)


def q_learning(mdp: TabularMDP, start: int, n_episodes: int, n_runs: int = 1, alpha: float = 0.5,
               epsilon: float = 0.1, seed: int = 0, max_episode_steps: int = 100_000):
    """Off-policy TD control (Watkins 1989; Sutton and Barto 2018, section 6.5), N runs at once.

    Acts epsilon-greedily but moves Q(S, A) towards R + gamma * max_a' Q(S', a'):
    it learns the value of the greedy policy while following another one.
    Arguments and results as in ``sarsa``.
    """
    return _td_control("q_learning", mdp, start, n_episodes, n_runs, alpha, epsilon, seed, max_episode_steps)


def expected_sarsa(mdp: TabularMDP, start: int, n_episodes: int, n_runs: int = 1, alpha: float = 0.5,
                   epsilon: float = 0.1, seed: int = 0, max_episode_steps: int = 100_000):
    """Expected SARSA (Sutton and Barto 2018, section 6.6), N runs at once.

    The target averages Q(S', .) over the epsilon-greedy policy instead of sampling A':
    SARSA's on-policy answer without the noise of the sampled next action.
    Arguments and results as in ``sarsa``.
    """
    return _td_control("expected_sarsa", mdp, start, n_episodes, n_runs, alpha, epsilon, seed, max_episode_steps)


def greedy_path(Q: np.ndarray, mdp: TabularMDP, start: int, max_steps: int | None = None) -> np.ndarray:
    """The states visited by acting greedily on ``Q`` (shape (S, A)) from ``start``.

    Ties go to the first maximal action. Stops at a terminal state, after
    ``max_steps`` moves (default S), or when a state repeats (a greedy policy on
    a deterministic grid then loops forever). Follows the most likely next state
    of P. Returns int array of the visited states, ``start`` first.

    >>> from course_lib.mdp import small_gridworld
    >>> Q = np.zeros((16, 4)); Q[:, 3] = 1.0                    # always left
    >>> greedy_path(Q, small_gridworld(), start=2).tolist()
    [2, 1, 0]
    """
    Q = np.asarray(Q)
    if Q.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(f"Q must have shape (S, A) = ({mdp.n_states}, {mdp.n_actions}); got shape {Q.shape}")
    if not 0 <= int(start) < mdp.n_states:
        raise ValueError(f"start must be a state in [0, {mdp.n_states}); got {start}")
    max_steps = mdp.n_states if max_steps is None else int(max_steps)
    path = [int(start)]
    seen = {int(start)}
    while not mdp.terminal[path[-1]] and len(path) <= max_steps:
        s = path[-1]
        nxt = int(np.argmax(mdp.P[s, int(np.argmax(Q[s]))]))
        path.append(nxt)
        if nxt in seen:
            break
        seen.add(nxt)
    return np.array(path)
