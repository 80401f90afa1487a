"""Checks for exercise 4: epsilon-greedy actions, the SARSA and Q-learning targets, the TD update.

References are plain loops written here, independent of ``course_lib.td``.
"""

from __future__ import annotations

import numpy as np

from . import assert_close

__all__ = ["check_epsilon_greedy", "check_sarsa_target", "check_q_learning_target", "check_td_update"]


# ---------------------------------------------------------------- epsilon-greedy
def _as_int_array(got, what: str, case: str, shape) -> np.ndarray:
    if got is None:
        raise AssertionError(f"{what} returned None for case '{case}'. Did you forget `return`?")
    got = np.asarray(got)
    if got.shape != tuple(shape):
        raise AssertionError(f"{what}, case '{case}': expected actions of shape {tuple(shape)}; got shape {got.shape}")
    if got.dtype.kind not in "iu":
        raise AssertionError(f"{what}, case '{case}': expected integer actions; got dtype {got.dtype}")
    return got


def check_epsilon_greedy(epsilon_greedy, hidden: bool = False) -> None:
    """Check ``epsilon_greedy(q, epsilon, rng)`` by the frequencies of the actions it picks.

    The frequencies must match pi(a|s) = epsilon / A + (1 - epsilon) / k for the k
    tied greedy actions, within 5 standard errors per action (about 30 comparisons
    in all, so a correct function fails by chance less than once in 10,000 tries).
    """
    cases = [
        ("epsilon 0 picks the argmax of each row", np.array([[0.0, 2.0, 1.0], [-1.0, -3.0, -2.0], [4.0, 0.0, 3.9]]), 0.0),
        ("epsilon 0.2, one greedy action per row", np.array([[0.0, 1.0, -1.0, 0.5]]), 0.2),
        ("epsilon 0, two tied greedy actions: pick either, at random", np.array([[1.0, 5.0, 5.0, 0.0]]), 0.0),
        ("epsilon 1: uniform over all actions", np.array([[0.0, 9.0, 0.0]]), 1.0),
    ]
    if hidden:
        cases += [
            ("epsilon 0.5, all actions tied", np.zeros((1, 5)), 0.5),
            ("epsilon 0.1, negative values", np.array([[-10.0, -2.0, -7.0]]), 0.1),
        ]
    n_draws = 20_000
    for i, (case, q, epsilon) in enumerate(cases):
        rng = np.random.default_rng(100 + i)
        # Each row repeated n_draws times: one call, many independent choices.
        batch = np.repeat(q, n_draws, axis=0)
        got = _as_int_array(epsilon_greedy(batch.copy(), epsilon, rng), "epsilon_greedy", case, batch.shape[:-1])
        A = q.shape[1]
        if got.min() < 0 or got.max() >= A:
            raise AssertionError(f"epsilon_greedy, case '{case}': actions must lie in 0..{A - 1}; got {got.min()}..{got.max()}")
        for row_i, row in enumerate(q):
            top = [a for a in range(A) if row[a] == max(row)]
            expected = np.array([epsilon / A + ((1 - epsilon) / len(top) if a in top else 0.0) for a in range(A)])
            picked = got[row_i * n_draws:(row_i + 1) * n_draws]
            freq = np.bincount(picked, minlength=A) / n_draws
            tol = 5 * np.sqrt(expected * (1 - expected) / n_draws) + 1e-9
            bad = np.abs(freq - expected) > tol
            if bad.any():
                a = int(np.argmax(bad))
                raise AssertionError(
                    f"epsilon_greedy, case '{case}': for q = {row.tolist()} action {a} should be picked with "
                    f"probability {expected[a]:.3f}; it was picked {freq[a]:.3f} of the time over {n_draws} draws"
                )
    print(f"epsilon_greedy: all {len(cases)} cases pass.")


# ---------------------------------------------------------------- targets
def _target_loop(rewards, q_next, next_actions, dones, gamma, kind):
    y = np.zeros(len(rewards))
    for i in range(len(rewards)):
        if dones[i]:
            y[i] = rewards[i]                     # S' is terminal: its value is 0
        elif kind == "sarsa":
            y[i] = rewards[i] + gamma * q_next[i][next_actions[i]]
        else:
            y[i] = rewards[i] + gamma * max(q_next[i])
    return y


def _target_cases(hidden: bool, seed: int):
    rng = np.random.default_rng(seed + (1 if hidden else 0))
    # Next actions chosen so that they are NOT the greedy ones: SARSA and max differ.
    q = np.array([[1.0, 4.0, 2.0], [0.0, -1.0, 3.0], [2.0, 2.0, 5.0]])
    yield "three transitions, none terminal, exploratory next actions", np.array([-1.0, 0.5, 2.0]), q, np.array([0, 1, 0]), np.zeros(3, bool), 0.9
    yield "the middle transition ends the episode", np.array([-1.0, -100.0, -1.0]), q, np.array([2, 2, 1]), np.array([False, True, False]), 1.0
    r, qn = rng.normal(size=8), rng.normal(size=(8, 4))
    yield "8 random transitions with episode ends", r, qn, rng.integers(4, size=8), rng.random(8) < 0.4, 0.95
    if hidden:
        yield "gamma 0: the target is the reward", r, qn, rng.integers(4, size=8), np.zeros(8, bool), 0.0
        yield "every transition terminal", r, qn, rng.integers(4, size=8), np.ones(8, bool), 0.9
        yield "a single transition", np.array([2.0]), np.array([[7.0, -7.0]]), np.array([1]), np.array([False]), 0.5


def check_sarsa_target(sarsa_target, hidden: bool = False) -> None:
    """Check ``sarsa_target(rewards, q_next, next_actions, dones, gamma)`` against a loop."""
    n = 0
    for case, r, qn, an, d, gamma in _target_cases(hidden, seed=40):
        expected = _target_loop(r, qn, an, d, gamma, "sarsa")
        got = sarsa_target(r.copy(), qn.copy(), an.copy(), d.copy(), gamma)
        try:
            assert_close(got, expected, "sarsa_target", case, labels=lambda idx: f"transition {idx[0]}")
        except AssertionError as err:
            hint = ""
            if isinstance(got, np.ndarray) and got.shape == expected.shape:
                if np.allclose(got, _target_loop(r, qn, an, d, gamma, "max")):
                    hint = " It looks like max_a Q(S', a): SARSA bootstraps on Q(S', A') for the action A' actually taken next."
                elif np.allclose(got, _target_loop(r, qn, an, np.zeros_like(d), gamma, "sarsa")):
                    hint = " It looks like the bootstrap is kept on terminal transitions: multiply it by (1 - done)."
            raise AssertionError(str(err) + hint) from None
        n += 1
    print(f"sarsa_target: all {n} cases pass.")


def check_q_learning_target(q_learning_target, hidden: bool = False) -> None:
    """Check ``q_learning_target(rewards, q_next, dones, gamma)`` against a loop."""
    n = 0
    for case, r, qn, an, d, gamma in _target_cases(hidden, seed=50):
        expected = _target_loop(r, qn, an, d, gamma, "max")
        got = q_learning_target(r.copy(), qn.copy(), d.copy(), gamma)
        try:
            assert_close(got, expected, "q_learning_target", case, labels=lambda idx: f"transition {idx[0]}")
        except AssertionError as err:
            hint = ""
            if isinstance(got, np.ndarray) and got.shape == expected.shape:
                if np.allclose(got, _target_loop(r, qn, an, np.zeros_like(d), gamma, "max")):
                    hint = " It looks like the bootstrap is kept on terminal transitions: multiply it by (1 - done)."
            raise AssertionError(str(err) + hint) from None
        n += 1
    print(f"q_learning_target: all {n} cases pass.")


# ---------------------------------------------------------------- TD update
def check_td_update(td_update, hidden: bool = False) -> None:
    """Check ``td_update(Q, states, actions, targets, alpha)`` (one step per run, a new table back)."""
    rng = np.random.default_rng(61 if hidden else 60)
    cases = [
        ("one run, one step", rng.normal(size=(1, 4, 2)), np.array([2]), np.array([1]), np.array([3.0]), 0.5),
        ("three runs in different states", rng.normal(size=(3, 5, 4)), np.array([0, 4, 2]), np.array([3, 0, 1]), rng.normal(size=3), 0.1),
        ("three runs in the SAME state and action (each updates its own table)", rng.normal(size=(3, 5, 4)),
         np.array([1, 1, 1]), np.array([2, 2, 2]), np.array([1.0, 2.0, 3.0]), 0.5),
    ]
    if hidden:
        cases += [
            ("alpha 1 jumps to the target", rng.normal(size=(4, 3, 3)), rng.integers(3, size=4), rng.integers(3, size=4), rng.normal(size=4), 1.0),
            ("many runs", rng.normal(size=(50, 6, 4)), rng.integers(6, size=50), rng.integers(4, size=50), rng.normal(size=50), 0.3),
        ]
    for case, Q, s, a, y, alpha in cases:
        expected = Q.copy()
        for n in range(Q.shape[0]):
            expected[n, s[n], a[n]] += alpha * (y[n] - expected[n, s[n], a[n]])
        Q_in = Q.copy()
        got = td_update(Q_in, s.copy(), a.copy(), y.copy(), alpha)

        def label(idx):
            return f"run {idx[0]}, state {idx[1]}, action {idx[2]}"

        assert_close(got, expected, "td_update", case, labels=label)
        if not np.array_equal(Q_in, Q):
            raise AssertionError(f"td_update, case '{case}': the input table was changed; return a new table (start from Q.copy())")
    print(f"td_update: all {len(cases)} cases pass.")
