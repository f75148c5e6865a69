"""Proportional prioritised replay: a NumPy sum tree and a sampler on top of it.

Schaul et al. 2016, "Prioritized Experience Replay", sec. 3.3 (proportional variant,
``P(i) = p_i^alpha / sum_k p_k^alpha`` with ``p_i = |delta_i| + eps``) and sec. 3.4
(importance-sampling weights ``w_i = (size * P(i))^-beta``, normalised by their maximum).

The sampler only hands out indices; storage lives elsewhere. Beta annealing is a schedule
evaluated by the caller (``reprl.optim.schedules.Schedule``) and passed to :meth:`sample`
as a float, so checkpoints stay plain data.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _last_write(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last value given for each duplicated index (sequential-assignment semantics).

    NumPy does not promise an order for duplicated fancy-index assignments, so dedupe first.
    """
    rev_idx = indices[::-1]
    uniq, first_in_rev = np.unique(rev_idx, return_index=True)
    return uniq, values[::-1][first_in_rev]


class SumTree:
    """Binary sum tree over ``capacity`` non-negative float64 priorities.

    Array layout: node 1 is the root, node ``j`` has children ``2j`` and ``2j + 1``; leaves
    live at ``[size_pow2, size_pow2 + capacity)`` where ``size_pow2`` is the next power of two
    (padding leaves stay 0, so any positive capacity works). Parents are recomputed from
    their children on every update (never incremented), so sums do not drift.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive int, got {capacity}")
        self.capacity = int(capacity)
        self._leaf0 = 1 << max(0, (self.capacity - 1).bit_length())
        self._depth = self._leaf0.bit_length() - 1
        self._tree = np.zeros(2 * self._leaf0, dtype=np.float64)

    def _check_indices(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.capacity):
            raise IndexError(f"indices must lie in [0, {self.capacity})")
        return indices

    def update(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaf priorities; for a duplicated index the last value wins."""
        indices = self._check_indices(indices)
        priorities = np.broadcast_to(
            np.asarray(priorities, dtype=np.float64).reshape(-1), indices.shape
        )
        if indices.size == 0:
            return
        if not np.all(np.isfinite(priorities)) or priorities.min() < 0:
            raise ValueError("priorities must be finite and non-negative")
        indices, priorities = _last_write(indices, priorities)
        nodes = indices + self._leaf0
        self._tree[nodes] = priorities
        for _ in range(self._depth):
            nodes = np.unique(nodes >> 1)
            self._tree[nodes] = self._tree[2 * nodes] + self._tree[2 * nodes + 1]

    def total(self) -> float:
        """Sum of all priorities."""
        return float(self._tree[1])

    def __getitem__(self, indices: Any) -> np.ndarray | float:
        """Leaf priorities (int, slice or index array)."""
        return self._tree[self._leaf0 : self._leaf0 + self.capacity][indices]

    def max(self) -> float:
        """Largest leaf priority (an O(capacity) scan; fine for diagnostics)."""
        return float(self[:].max())

    def find_prefix_sum(self, values: np.ndarray) -> np.ndarray:
        """For each ``v`` in ``[0, total)``, the leaf ``i`` with
        ``cumsum(p)[i - 1] <= v < cumsum(p)[i]`` (batched root-to-leaf descent).

        Round-off guard: the descent never enters a subtree whose sum is 0, so it never
        returns a zero-priority leaf nor a padding index ``>= capacity``, even when ``v`` is
        at or past the float total.
        """
        if self.total() <= 0.0:
            raise ValueError("find_prefix_sum on an empty tree (total priority is 0)")
        v = np.asarray(values, dtype=np.float64).reshape(-1).copy()
        nodes = np.ones(v.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum, right_sum = self._tree[left], self._tree[left + 1]
            go_left = ((v < left_sum) & (left_sum > 0.0)) | (right_sum <= 0.0)
            v = np.where(go_left, v, v - left_sum)
            nodes = np.where(go_left, left, left + 1)
        return nodes - self._leaf0

    def state_dict(self) -> dict[str, Any]:
        """Plain-numpy state: capacity and leaf priorities."""
        return {"capacity": self.capacity, "priorities": self[:].copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(
                f"capacity mismatch: checkpoint {state['capacity']}, tree {self.capacity}"
            )
        self._tree[:] = 0.0
        self.update(np.arange(self.capacity), np.asarray(state["priorities"]))


class PrioritizedSampler:
    """Proportional prioritised sampling of indices (Schaul et al. 2016, sec. 3.3 + 3.4).

    The tree stores ``p_i^alpha``. New items get ``max_priority^alpha`` where
    ``max_priority`` is the running max of ``|delta| + eps`` seen so far (1.0 initially), so
    every transition is replayed at least once with high probability (Schaul et al., Alg. 1).
    """

    def __init__(self, capacity: int, alpha: float = 0.6, eps: float = 1e-6) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0 (keeps every priority positive), got {eps}")
        self.capacity = int(capacity)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.tree = SumTree(capacity)
        self.max_priority = 1.0
        """Running max of raw priorities ``|delta| + eps`` (before the alpha power)."""
        self._high = 0
        """One past the largest index ever added: ``sample`` checks it against ``size``."""

    def add(self, indices: np.ndarray) -> None:
        """Give new (or overwritten) items the current max priority."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            return
        self.tree.update(indices, np.full(indices.shape, self.max_priority**self.alpha))
        self._high = max(self._high, int(indices.max()) + 1)

    def update(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        """Set priorities to ``(|td| + eps)^alpha``; duplicated indices: the last wins."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        raw = np.abs(np.asarray(td_errors, dtype=np.float64).reshape(-1)) + self.eps
        if indices.shape != raw.shape:
            raise ValueError(f"indices {indices.shape} and td_errors {raw.shape} differ")
        if indices.size == 0:
            return
        self.tree.update(indices, raw**self.alpha)
        self.max_priority = max(self.max_priority, float(raw.max()))

    def sample(
        self, batch_size: int, beta: float, rng: np.random.Generator, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stratified proportional sample of ``batch_size`` indices in ``[0, size)``.

        ``[0, total)`` is split into ``batch_size`` equal segments with one uniform draw per
        segment (Schaul et al., sec. 3.3 / App. B.2.1), which lowers the variance of the batch.

        Returns:
            ``(indices, weights)``: int64 ``(batch_size,)`` and float32 ``(batch_size,)``
            with ``w_i = (size * P(i))^-beta / max_j w_j``, the max taken over *this batch*
            (as Dopamine and most implementations do), so weights lie in ``(0, 1]``.
        """
        if not 0 < size <= self.capacity:
            raise ValueError(f"size must lie in [1, {self.capacity}], got {size}")
        if self._high > size:
            raise ValueError(f"index {self._high - 1} was added but size is {size}")
        total = self.tree.total()
        if total <= 0.0:
            raise ValueError("nothing to sample: add items first")
        segment = total / batch_size
        values = (np.arange(batch_size) + rng.random(batch_size)) * segment
        # Float round-off can push the last draw to total; keep it strictly inside.
        values = np.minimum(values, np.nextafter(total, 0.0))
        indices = self.tree.find_prefix_sum(values)
        probs = np.asarray(self.tree[indices]) / total
        weights = (size * probs) ** (-beta)
        weights = weights / weights.max()
        return indices, weights.astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Plain data: the tree, the running max and the hyper-parameters."""
        return {
            "tree": self.tree.state_dict(),
            "max_priority": self.max_priority,
            "high": self._high,
            "alpha": self.alpha,
            "eps": self.eps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tree.load_state_dict(state["tree"])
        self.max_priority = float(state["max_priority"])
        self._high = int(state["high"])
        self.alpha = float(state["alpha"])
        self.eps = float(state["eps"])
