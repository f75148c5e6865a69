"""SumTree against a cumsum + searchsorted reference; PrioritizedSampler frequencies, IS
weights, bounds and checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest

from reprl.data.priority import PrioritizedSampler, SumTree


def slow_find(priorities: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Leaf i with cumsum[i-1] <= v < cumsum[i]."""
    return np.searchsorted(np.cumsum(priorities), values, side="right")


@pytest.mark.parametrize("capacity", [1, 2, 7, 100, 1000])
def test_sum_tree_matches_cumsum_reference(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    p = rng.random(capacity)
    p[rng.random(capacity) < 0.3] = 0.0
    p[0] = max(p[0], 0.5)  # at least one positive priority
    tree.update(np.arange(capacity), p)
    np.testing.assert_allclose(tree.total(), p.sum(), rtol=1e-12)
    np.testing.assert_array_equal(tree[:], p)
    values = rng.random(5000) * p.sum()
    idx = tree.find_prefix_sum(values)
    np.testing.assert_array_equal(idx, slow_find(p, values))
    assert (p[idx] > 0).all() and (idx < capacity).all()


def test_sum_tree_partial_updates_keep_sums_exact() -> None:
    rng = np.random.default_rng(0)
    tree, p = SumTree(37), np.zeros(37)
    for _ in range(50):
        idx = rng.integers(0, 37, size=8)
        val = rng.random(8) * (rng.random(8) > 0.2)
        tree.update(idx, val)
        for i, v in zip(idx, val):  # sequential assignment: the last write wins
            p[i] = v
        np.testing.assert_array_equal(tree[:], p)
        np.testing.assert_allclose(tree.total(), p.sum(), rtol=1e-12, atol=1e-12)
        if p.sum() > 0:
            values = rng.random(256) * p.sum()
            np.testing.assert_array_equal(tree.find_prefix_sum(values), slow_find(p, values))


def test_sum_tree_duplicate_indices_last_write_wins() -> None:
    tree = SumTree(5)
    tree.update(np.array([1, 3, 1, 1]), np.array([9.0, 2.0, 4.0, 0.5]))
    np.testing.assert_array_equal(tree[:], [0.0, 0.5, 0.0, 2.0, 0.0])
    assert tree.total() == 2.5
    assert tree.max() == 2.0


def test_sum_tree_boundary_queries_skip_zero_leaves() -> None:
    p = np.array([0.0, 1.0, 0.0, 0.0, 2.0, 0.0])  # capacity 6: padded to 8 leaves
    tree = SumTree(6)
    tree.update(np.arange(6), p)
    total = tree.total()
    queries = np.array([0.0, 1.0 - 1e-12, 1.0, total - 1e-12, np.nextafter(total, 0), total])
    idx = tree.find_prefix_sum(queries)
    # v == total (or beyond, by round-off) still lands on the last positive leaf.
    np.testing.assert_array_equal(idx, [1, 1, 4, 4, 4, 4])
    # Many tiny priorities: round-off in the tree sums must never yield a zero/padding leaf.
    tree = SumTree(1000)
    q = np.full(1000, 0.1)
    q[-300:] = 0.0
    tree.update(np.arange(1000), q)
    idx = tree.find_prefix_sum(np.array([0.0, tree.total(), np.nextafter(tree.total(), 0)]))
    assert idx[0] == 0 and (idx[1:] == 699).all()


def test_sum_tree_state_dict_round_trip() -> None:
    tree = SumTree(11)
    tree.update(np.arange(11), np.arange(11, dtype=np.float64))
    other = SumTree(11)
    other.load_state_dict(tree.state_dict())
    np.testing.assert_array_equal(other[:], tree[:])
    assert other.total() == tree.total()
    with pytest.raises(ValueError, match="capacity"):
        SumTree(12).load_state_dict(tree.state_dict())


def test_sampler_frequencies_match_proportional_probabilities() -> None:
    capacity, size, alpha = 20, 13, 0.7
    sampler = PrioritizedSampler(capacity, alpha=alpha)
    sampler.add(np.arange(size))
    rng = np.random.default_rng(0)
    td = rng.normal(size=size) * 2.0
    td[[2, 5]] = 0.0  # priority eps^alpha: tiny but non-zero
    sampler.update(np.arange(size), td)
    expected = (np.abs(td) + sampler.eps) ** alpha
    expected /= expected.sum()
    counts = np.zeros(capacity)
    for _ in range(2000):
        idx, _ = sampler.sample(32, 0.4, rng, size)
        assert (idx < size).all()
        counts += np.bincount(idx, minlength=capacity)
    freq = counts / counts.sum()
    np.testing.assert_allclose(freq[:size], expected, atol=0.005)
    assert counts[size:].sum() == 0


def test_sampler_never_samples_zero_priority_or_beyond_size() -> None:
    sampler = PrioritizedSampler(64, alpha=1.0)
    sampler.add(np.arange(10))
    # eps keeps every sampler priority positive, so write exact zeros into the tree itself.
    sampler.tree.update(np.arange(10), np.array([0, 0, 3, 0, 0, 0, 1, 0, 0, 0], dtype=float))
    rng = np.random.default_rng(1)
    for _ in range(200):
        idx, w = sampler.sample(16, 1.0, rng, 10)
        assert set(idx.tolist()) <= {2, 6}
        assert np.all((w > 0) & (w <= 1))
    with pytest.raises(ValueError, match="size"):
        sampler.sample(4, 1.0, rng, 5)  # index 9 was added but size is 5


def test_new_items_get_running_max_priority() -> None:
    sampler = PrioritizedSampler(8, alpha=0.5)
    sampler.add(np.array([0, 1]))
    np.testing.assert_allclose(sampler.tree[[0, 1]], [1.0, 1.0])
    sampler.update(np.array([0, 1]), np.array([3.0, -0.1]))
    assert sampler.max_priority == pytest.approx(3.0 + 1e-6)
    sampler.add(np.array([2]))
    assert sampler.tree[2] == pytest.approx((3.0 + 1e-6) ** 0.5)
    sampler.update(np.array([0]), np.array([0.0]))  # lowering a priority keeps the max
    sampler.add(np.array([3]))
    assert sampler.tree[3] == pytest.approx((3.0 + 1e-6) ** 0.5)


def test_importance_weights_match_slow_formula() -> None:
    sampler = PrioritizedSampler(30, alpha=0.6)
    sampler.add(np.arange(25))
    rng = np.random.default_rng(3)
    sampler.update(np.arange(25), rng.normal(size=25))
    beta, size = 0.45, 25
    idx, w = sampler.sample(10, beta, rng, size)
    p = sampler.tree[:size]
    ref = np.array([(size * p[i] / p.sum()) ** -beta for i in idx])
    ref /= ref.max()
    np.testing.assert_allclose(w, ref, rtol=1e-6)
    assert w.dtype == np.float32 and w.max() == 1.0


def test_sampler_state_dict_round_trip_gives_identical_samples() -> None:
    a = PrioritizedSampler(50, alpha=0.6)
    a.add(np.arange(40))
    a.update(np.arange(0, 40, 3), np.linspace(-2, 5, 14))
    b = PrioritizedSampler(50)
    b.load_state_dict(a.state_dict())
    assert b.alpha == 0.6 and b.max_priority == a.max_priority
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(5):
        ia, wa = a.sample(8, 0.5, rng_a, 40)
        ib, wb = b.sample(8, 0.5, rng_b, 40)
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(wa, wb)
    b.add(np.array([40]))
    a.add(np.array([40]))
    np.testing.assert_array_equal(a.tree[:], b.tree[:])
