"""Tests of course_lib.reward: Bradley-Terry kernels against plain loops and independent maximisers, the reward model's plumbing."""

import math

import numpy as np
import pytest
import torch

from course_lib.gpt import GPT, GPTConfig
from course_lib.reward import (
    PreferencePairs,
    RewardConfig,
    bradley_terry_log_likelihood,
    bradley_terry_loss,
    bradley_terry_mle,
    bradley_terry_probability,
    encode_texts,
    last_token_scores,
    load_or_train_reward_model,
    near_misses,
    pairwise_accuracy,
    preference_pairs,
    reward_cache_key,
    reward_config,
    reward_lr,
    reward_fn,
    score_texts,
    train_reward_model,
    true_preference_accuracy,
    written_reviews,
)
from course_lib.tasks import ReviewTask
from course_lib.tokenizer import CharTokenizer



# Small models and tensors: one torch thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


SEED_TABLE = np.array([[0, 8, 3], [4, 0, 2], [5, 3, 0]])  # A beat B 8-4, A beat C 3-5, B beat C 2-3


# ---------------------------------------------------------------- references written here
def probability_loop(p):
    n = len(p)
    return np.array([[p[i] / (p[i] + p[j]) for j in range(n)] for i in range(n)])


def log_likelihood_loop(p, wins):
    total = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if i != j and wins[i][j] > 0:
                total += wins[i][j] * math.log(p[i] / (p[i] + p[j]))
    return total


def mle_by_gradient_ascent(wins, steps=20_000, lr=0.05):
    """Maximise log L over theta = log pi by plain gradient ascent: d logL / d theta_i = W_i - sum_j n_ij sigmoid(theta_i - theta_j)."""
    wins = np.asarray(wins, dtype=float)
    n = len(wins)
    theta = np.zeros(n)
    games = wins + wins.T
    for _ in range(steps):
        grad = np.zeros(n)
        for i in range(n):
            grad[i] = wins[i].sum()
            for j in range(n):
                if j != i:
                    grad[i] -= games[i, j] / (1.0 + math.exp(theta[j] - theta[i]))
        theta += lr * grad / games.sum()
    p = np.exp(theta - theta.max())
    return p / p.sum()


def loss_loop(r_chosen, r_rejected):
    total = 0.0
    for a, b in zip(r_chosen, r_rejected):
        total += -math.log(1.0 / (1.0 + math.exp(-(a - b))))
    return total / len(r_chosen)


def random_wins(rng, n, max_count=9):
    w = rng.integers(0, max_count + 1, size=(n, n)).astype(float)
    np.fill_diagonal(w, 0)
    # Make every pair play and every player win and lose at least once, so the maximum is interior.
    w += 1 - np.eye(n)
    return w


# ---------------------------------------------------------------- probability and likelihood
def test_probability_matches_loop():
    rng = np.random.default_rng(0)
    for n in (2, 3, 6):
        p = rng.random(n) + 0.05
        np.testing.assert_allclose(bradley_terry_probability(p), probability_loop(p), rtol=1e-12)
    np.testing.assert_allclose(bradley_terry_probability([3.0, 1.0]), [[0.5, 0.75], [0.25, 0.5]])


def test_probability_rows_and_columns_complement():
    p = np.random.default_rng(1).random(5) + 0.1
    P = bradley_terry_probability(p)
    np.testing.assert_allclose(P + P.T, np.ones((5, 5)))


def test_log_likelihood_matches_loop():
    rng = np.random.default_rng(2)
    for n in (2, 3, 5):
        p, w = rng.random(n) + 0.05, random_wins(rng, n)
        assert bradley_terry_log_likelihood(p, w) == pytest.approx(log_likelihood_loop(p, w), rel=1e-12)
    assert bradley_terry_log_likelihood([2.0, 1.0], [[0, 2], [1, 0]]) == pytest.approx(2 * math.log(2 / 3) + math.log(1 / 3))


def test_log_likelihood_is_scale_free_and_minus_inf_for_an_impossible_win():
    p, w = np.array([0.2, 0.3, 0.5]), SEED_TABLE
    assert bradley_terry_log_likelihood(7 * p, w) == pytest.approx(bradley_terry_log_likelihood(p, w))
    assert bradley_terry_log_likelihood([0.0, 1.0], [[0, 1], [1, 0]]) == -math.inf
    assert bradley_terry_log_likelihood([0.0, 1.0], [[0, 0], [3, 0]]) == 0.0  # a zero-strength player who never won


# ---------------------------------------------------------------- the MLE
def test_mle_two_players_closed_form():
    for w, l in ((3, 1), (8, 4), (1, 9), (5, 5), (7, 0)):
        p = bradley_terry_mle([[0, w], [l, 0]])
        np.testing.assert_allclose(p, [w / (w + l), l / (w + l)], atol=1e-9)


def test_mle_seed_table_matches_gradient_ascent_and_grid():
    p = bradley_terry_mle(SEED_TABLE)
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p, mle_by_gradient_ascent(SEED_TABLE), atol=1e-6)
    # A fine grid on the 2-D simplex: the best grid point lies within one cell of the MLE.
    h = 1 / 200
    best, best_ll = None, -math.inf
    for i in range(1, 200):
        for j in range(1, 200 - i):
            a, b = i * h, j * h
            ll = log_likelihood_loop([a, b, (200 - i - j) * h], SEED_TABLE)
            if ll > best_ll:
                best, best_ll = (a, b, 1 - a - b), ll
    np.testing.assert_allclose(p, best, atol=2 * h)
    assert bradley_terry_log_likelihood(p, SEED_TABLE) >= best_ll - 1e-12


def test_mle_satisfies_the_likelihood_equations():
    """At the maximum each player's expected wins equal its observed wins: W_i = sum_j n_ij pi_i / (pi_i + pi_j)."""
    rng = np.random.default_rng(3)
    for n in (3, 4, 7):
        w = random_wins(rng, n)
        p = bradley_terry_mle(w)
        expected = [sum((w[i, j] + w[j, i]) * p[i] / (p[i] + p[j]) for j in range(n) if j != i) for i in range(n)]
        np.testing.assert_allclose(expected, w.sum(axis=1), rtol=1e-7)
        np.testing.assert_allclose(p, mle_by_gradient_ascent(w), atol=1e-5)


def test_mle_orientation_and_normalisation():
    # Player 0 wins most of its games: it must come out strongest (a transposed table makes it weakest).
    w = np.array([[0, 9, 9], [1, 0, 5], [1, 5, 0]])
    p = bradley_terry_mle(w)
    assert p[0] > p[1] and p[0] > p[2]
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(bradley_terry_mle(10 * w), p, atol=1e-9)  # only ratios of counts matter


def test_mle_player_who_never_wins_gets_zero():
    w = np.array([[0, 3, 2], [2, 0, 4], [0, 0, 0]])
    p = bradley_terry_mle(w)
    assert p[2] == pytest.approx(0.0, abs=1e-12)
    # Against each other 0 and 1 went 3-2; their wins over player 2 are certain at strength 0, so 0 vs 1 alone decides.
    np.testing.assert_allclose(p[:2], [0.6, 0.4], atol=1e-6)
    assert np.isfinite(p).all()


@pytest.mark.parametrize(
    "wins, match",
    [
        ([[0, 1, 2]], "square"),
        ([[0, -1], [2, 0]], ">= 0"),
        ([[1, 2], [3, 0]], "diagonal"),
        ([[0, 2, 0], [1, 0, 0], [0, 0, 0]], "never played"),
        ([[0, np.nan], [1, 0]], "finite"),
    ],
)
def test_mle_bad_input(wins, match):
    with pytest.raises(ValueError, match=match):
        bradley_terry_mle(wins)


def test_mle_bad_arguments():
    with pytest.raises(ValueError, match="iters"):
        bradley_terry_mle(SEED_TABLE, iters=0)
    with pytest.raises(ValueError, match="tol"):
        bradley_terry_mle(SEED_TABLE, tol=0)
    with pytest.raises(ValueError, match="strengths"):
        bradley_terry_probability([1.0, -1.0])


# ---------------------------------------------------------------- the pairwise loss
def test_loss_matches_loop_numpy_and_torch():
    rng = np.random.default_rng(4)
    for B in (1, 5, 64):
        a, b = rng.normal(size=B) * 3, rng.normal(size=B) * 3
        expected = loss_loop(a, b)
        got = bradley_terry_loss(a, b)
        assert isinstance(got, (np.ndarray, np.floating))
        assert float(got) == pytest.approx(expected, rel=1e-12)
        got_t = bradley_terry_loss(torch.tensor(a), torch.tensor(b))
        assert isinstance(got_t, torch.Tensor) and got_t.dim() == 0
        assert float(got_t) == pytest.approx(expected, rel=1e-10)
    assert float(bradley_terry_loss(np.array([2.0, 0.0]), np.array([0.0, 0.0]))) == pytest.approx((math.log(1 + math.exp(-2)) + math.log(2)) / 2, rel=1e-12)


def test_loss_sign_mean_and_extremes():
    assert float(bradley_terry_loss(np.array([5.0]), np.array([0.0]))) < float(bradley_terry_loss(np.array([0.0]), np.array([5.0])))
    # the mean, not the sum: repeating the batch leaves it unchanged
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.0, 1.0, 0.5])
    assert float(bradley_terry_loss(np.tile(a, 4), np.tile(b, 4))) == pytest.approx(float(bradley_terry_loss(a, b)))
    # huge margins stay finite in both float32 and float64
    big = bradley_terry_loss(np.array([0.0]), np.array([1000.0]))
    assert float(big) == pytest.approx(1000.0)
    big_t = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0]))
    assert float(big_t) == pytest.approx(200.0)
    assert float(bradley_terry_loss(torch.tensor([200.0]), torch.tensor([0.0]))) == pytest.approx(0.0, abs=1e-30)


def test_loss_gradient():
    a = torch.tensor([1.0, -1.0, 3.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    bradley_terry_loss(a, b).backward()
    expected = [-(1 - 1 / (1 + math.exp(-(x - 0.0)))) / 3 for x in (1.0, -1.0, 3.0)]  # d/dd -log sigma(d) = -(1 - sigma(d))
    np.testing.assert_allclose(a.grad.numpy(), expected, rtol=1e-12)


def test_loss_bad_input():
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="both"):
        bradley_terry_loss(torch.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="at least one"):
        bradley_terry_loss(np.zeros(0), np.zeros(0))


# ---------------------------------------------------------------- last_token_scores
def tiny_reward_model(seed=0, vocab_size=None, block_size=48):
    torch.manual_seed(seed)
    vocab_size = vocab_size or CharTokenizer().vocab_size
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=2, n_head=2, n_embd=16), value_head=True)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


def scores_loop(model, ids, mask):
    out = []
    with torch.no_grad():
        for b in range(ids.shape[0]):
            real = ids[b][mask[b].bool()]
            out.append(float(model.values(real[None])[0, -1]))
    return torch.tensor(out)


@pytest.mark.parametrize("layout", ["full", "right", "left", "both"])
def test_last_token_scores_matches_loop(layout):
    model = tiny_reward_model(vocab_size=13, block_size=16)
    masks = {
        "full": [[1] * 6] * 3,
        "right": [[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]],
        "left": [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]],
        "both": [[0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0]],
    }
    mask = torch.tensor(masks[layout])
    ids = torch.randint(3, 13, mask.shape, generator=torch.Generator().manual_seed(5)) * mask
    with torch.no_grad():
        got = last_token_scores(model, ids, mask)
    assert got.shape == (3,)
    torch.testing.assert_close(got, scores_loop(model, ids, mask), atol=1e-5, rtol=1e-5)


def test_last_token_scores_is_differentiable_and_checks_input():
    model = tiny_reward_model(vocab_size=13, block_size=16)
    ids, mask = torch.randint(3, 13, (2, 5)), torch.ones(2, 5, dtype=torch.long)
    last_token_scores(model, ids, mask).sum().backward()
    assert model.value_head.weight.grad is not None
    with pytest.raises(ValueError, match="value head"):
        last_token_scores(GPT(model.config), ids, mask)
    with pytest.raises(ValueError, match="at least one real"):
        last_token_scores(model, ids, torch.tensor([[1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        last_token_scores(model, ids, mask[:, :3])


# ---------------------------------------------------------------- pairs and texts
def test_encode_texts_layout():
    tok = CharTokenizer()
    ids, mask = encode_texts(["the soup was", "the bed was"], [" great.", " bad and cold."], tok)
    assert ids.shape == mask.shape == (2, 1 + len("the bed was bad and cold.") + 1)
    assert tok.decode(ids[0]) == "the soup was great."
    assert int(ids[0, int(mask[0].sum()) - 1]) == tok.eos_id and int(ids[0, 0]) == tok.bos_id
    assert mask[0].tolist() == [1] * 21 + [0] * 6
    cut, cut_mask = encode_texts(["the bed was"], [" bad and cold and slow and loud."], tok, max_len=20)
    assert cut.shape == (1, 20) and tok.decode(cut[0]) == "the bed was bad an" and int(cut[0, -1]) == tok.eos_id
    with pytest.raises(ValueError, match="max_len"):
        encode_texts(["the coffee was"], [" good."], tok, max_len=10)
    left, left_mask = encode_texts(["the soup was", "the bed was"], [" great.", " bad and cold."], tok, pad_left=True)
    assert left_mask[0].tolist() == [0] * 6 + [1] * 21 and left_mask[1].all()
    for b in range(2):  # the same tokens, moved to the right end
        assert left[b][left_mask[b].bool()].tolist() == ids[b][mask[b].bool()].tolist()


def test_written_reviews_lean_positive_and_include_flaws():
    task = ReviewTask()
    reviews = written_reviews(task, 2000, np.random.default_rng(0))
    scores = np.array([task.score(r) for r in reviews])
    assert (scores == 3).mean() > 0.05  # the top of the scale is well represented
    assert 0.1 < (scores == task.malformed_score).mean() < 0.3
    words = [r[1:-1].split(" and ") for r in reviews]
    assert any(len(set(w)) < len(w) for w in words)  # some repeats
    assert any(len(w) > task.max_adjectives for w in words)  # some too long
    assert all(set(r) <= set(CharTokenizer().alphabet) for r in reviews)


def test_near_misses_are_malformed_and_close():
    task = ReviewTask()
    rng = np.random.default_rng(0)
    reviews = written_reviews(task, 600, rng, flawed=0.0)
    misses = near_misses(task, reviews, rng)
    assert len(misses) == len(reviews)
    assert all(task.score(m) == task.malformed_score for m in misses)
    assert all(m != r and abs(len(m) - len(r)) <= 8 for m, r in zip(misses, reviews))
    assert all(set(m) <= set(CharTokenizer().alphabet) for m in misses)
    # every kind of mistake turns up
    assert any(m == r[1:] for m, r in zip(misses, reviews))  # leading space dropped
    assert any(m == r[:-1] for m, r in zip(misses, reviews))  # full stop dropped
    assert any(m == r.replace(" and ", " ") for m, r in zip(misses, reviews) if " and " in r)  # " and " dropped
    assert any(m.startswith(r) and len(m) > len(r) for m, r in zip(misses, reviews))  # text after the stop
    assert near_misses(task, reviews, np.random.default_rng(1)) == near_misses(task, reviews, np.random.default_rng(1))


def test_preference_pairs_include_near_misses():
    task = ReviewTask()
    policy = tiny_reward_model(seed=1, block_size=24)
    pairs = preference_pairs(policy, task, 40, seed=3, beta=50.0, written_fraction=1.0, near_miss_fraction=1.0)
    # every pair is a written review against its own near-miss: the review wins, the near-miss is malformed
    assert all(task.score(r) == task.malformed_score < task.score(c) for c, r in zip(pairs.chosen, pairs.rejected))
    none = preference_pairs(policy, task, 40, seed=3, beta=50.0, written_fraction=1.0, near_miss_fraction=0.0)
    assert none != pairs
    with pytest.raises(ValueError, match="near_miss_fraction"):
        preference_pairs(policy, task, 4, seed=0, near_miss_fraction=-0.1)


def test_preference_pairs_deterministic_and_consistent():
    task = ReviewTask()
    policy = tiny_reward_model(seed=1, block_size=24)
    pairs = preference_pairs(policy, task, 24, seed=3, split="test", beta=50.0, written_fraction=1.0)
    again = preference_pairs(policy, task, 24, seed=3, split="test", beta=50.0, written_fraction=1.0)
    assert pairs == again and len(pairs) == 24
    assert all(p.split()[1] in task.nouns[-3:] for p in pairs.prompts)
    assert all(c != r for c, r in zip(pairs.chosen, pairs.rejected))
    # a nearly noiseless labeler always picks the higher score, and ties are left out
    assert all(task.score(c) > task.score(r) for c, r in zip(pairs.chosen, pairs.rejected))
    with_ties = preference_pairs(policy, task, 60, seed=3, beta=50.0, written_fraction=0.5, drop_ties=False)
    assert any(task.score(c) == task.score(r) for c, r in zip(with_ties.chosen, with_ties.rejected))
    with pytest.raises(ValueError, match="written_fraction"):
        preference_pairs(policy, task, 4, seed=0, written_fraction=1.5)


def test_preference_pairs_labels_are_noisy_at_small_beta():
    task = ReviewTask()
    policy = tiny_reward_model(seed=2, block_size=24)
    pairs = preference_pairs(policy, task, 150, seed=0, beta=0.3, written_fraction=1.0)
    wrong = sum(task.score(c) < task.score(r) for c, r in zip(pairs.chosen, pairs.rejected))
    assert wrong > 10


def test_pairs_container():
    pairs = PreferencePairs(["a", "b", "c"], ["x", "y", "z"], ["u", "v", "w"])
    assert pairs.subset([2, 0]) == PreferencePairs(["c", "a"], ["z", "x"], ["w", "u"])
    assert pairs.subset(slice(1, None)).prompts == ["b", "c"]
    with pytest.raises(ValueError, match="same length"):
        PreferencePairs(["a"], ["x", "y"], ["u"])


def test_accuracies_and_reward_fn():
    task = ReviewTask()
    model = tiny_reward_model(seed=4)
    pairs = PreferencePairs(["the soup was"] * 4, [" great.", " good and warm.", " bad.", " cold and nice."],
                            [" bad.", " awful.", " good.", " cold and nice and fun."])
    acc = pairwise_accuracy(model, pairs)
    swapped = PreferencePairs(pairs.prompts, pairs.rejected, pairs.chosen)
    assert acc + pairwise_accuracy(model, swapped) == pytest.approx(1.0)  # no ties in random scores
    scores = score_texts(model, pairs.prompts, pairs.chosen)
    agree = [(float(s_c) > float(s_r)) == (task.score(c) > task.score(r))
             for s_c, s_r, c, r in zip(scores, score_texts(model, pairs.prompts, pairs.rejected), pairs.chosen, pairs.rejected)]
    assert true_preference_accuracy(model, pairs, task) == pytest.approx(np.mean(agree))
    fn = reward_fn(model)
    out = fn(pairs.prompts, pairs.chosen)
    assert out.dtype == torch.float32 and out.shape == (4,) and not out.requires_grad
    torch.testing.assert_close(out, scores)
    torch.testing.assert_close(out, scores_loop(model, *encode_texts(pairs.prompts, pairs.chosen, CharTokenizer())))


def test_train_reward_model_learns_a_simple_preference():
    """Two words, one always preferred: a few steps make the model rank every pair right."""
    base = tiny_reward_model(seed=5, block_size=16)
    base.value_head = None
    pos, neg = ReviewTask.positive, ReviewTask.negative
    pairs = PreferencePairs([f"a {i}" for i in range(5) for _ in range(4)],
                            [f" {pos[i % 10]}." for i in range(20)], [f" {neg[i % 10]}." for i in range(20)])
    config = RewardConfig(n_pairs=20, n_test_pairs=1, steps=80, batch_size=10, lr=1e-2, warmup_steps=1, eval_every=40)
    model, history = train_reward_model(base, pairs, config, progress=False, eval_pairs=pairs)
    assert history["loss"][-1] < 0.2 < history["loss"][0]
    assert pairwise_accuracy(model, pairs) == 1.0
    assert [e[0] for e in history["eval"]] == [40, 80]
    assert base.value_head is None  # the base model is left as it was


def test_reward_lr_schedule():
    config = RewardConfig(steps=100, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    lrs = [reward_lr(t, config) for t in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # decays after the warm-up
    assert reward_lr(100, config) == pytest.approx(1e-4)
    assert reward_lr(10 + 45, config) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half-way down the cosine


def test_reward_config_and_cache_key():
    assert reward_config(fast=True).steps < reward_config(fast=False).steps
    with pytest.raises(ValueError, match="beta"):
        RewardConfig(beta=-1.0)
    k = reward_cache_key(RewardConfig(), "base-x")
    assert k != reward_cache_key(RewardConfig(seed=1), "base-x") and k != reward_cache_key(RewardConfig(), "base-y")


def test_load_or_train_caches(tmp_path):
    base = tiny_reward_model(seed=6, block_size=24)
    base.value_head = None
    config = RewardConfig(n_pairs=16, n_test_pairs=8, steps=3, batch_size=4, warmup_steps=1, eval_every=2)
    model, record = load_or_train_reward_model(config, base=base, directory=tmp_path, progress=False)
    assert not record["cached"] and 0.0 <= record["heldout_accuracy"] <= 1.0
    assert len(list(tmp_path.glob("reward-*.safetensors"))) == 1 and not list(tmp_path.glob("*.tmp"))
    again, record2 = load_or_train_reward_model(config, base=base, directory=tmp_path, progress=False)
    assert record2["cached"]
    texts = (["the soup was", "the bed was"], [" great.", " bad and"])
    torch.testing.assert_close(reward_fn(again)(*texts), reward_fn(model)(*texts))
    with pytest.raises(ValueError, match="base"):
        load_or_train_reward_model(config, base="nope", directory=tmp_path)
