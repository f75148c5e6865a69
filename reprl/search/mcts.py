"""Batched Monte-Carlo tree search with a policy/value network (AlphaZero's PUCT search).

Silver et al. 2018, "A general reinforcement learning algorithm that masters chess, shogi and
Go through self-play" (Science; pseudocode in its supplementary materials): each simulation
descends from the root choosing ``argmax_a Q(s, a) + U(s, a)`` with

    U(s, a) = c_puct * P(s, a) * sqrt(N(s)) / (1 + N(s, a)),

expands the leaf it reaches with the network's priors ``P`` (a softmax over the legal
actions) and value ``v``, and backs ``v`` up the path. Two-player zero-sum games flip the
value's sign at every ply (a position good for the player to move is bad for the one who
moved into it); single-player games (Catch) do not. Rewards on edges (the game's reward for
the player who moved) are added during the backup, so terminal positions need no network:
their value is 0 and the edge carries the outcome. Unvisited actions have ``Q = 0``. For
long single-player episodes with rewards of any scale (Atari through
:class:`reprl.search.models.EnvSearchModel`) the backup can be discounted and Q min-max
normalised over each tree (MuZero's choices): ``discount`` and ``normalize_q``.

Batched: ``B`` root states are searched together in lock-step; selection is vectorised over
the roots with NumPy, and the ``B`` leaves of one simulation are evaluated in *one* network
call. Each root's tree is a block of preallocated arrays ``(B, num_simulations + 1, A)``.
The model is a single game object (:class:`reprl.envs.games.Game`): the search restores a
node's state with ``set_state`` before stepping it, so one object serves every root.

Deterministic: the only randomness is the Dirichlet noise at each root, drawn from that
root's own ``numpy.random.Generator``; a root searched in a batch gets exactly the visit
counts it gets searched alone with the same generator (up to the network's batched float
arithmetic). Ties in the PUCT argmax go to the lowest action index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from reprl.errors import ConfigError

Evaluator = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``(obs (K, *obs_shape), legal (K, A) bool) -> (logits (K, A), value (K,))``: the network's
policy logits and value (for the player to move) of K positions, in one call."""


class SearchModel(Protocol):
    """What MCTS needs of a game: a true model whose state can be saved and restored."""

    num_players: int

    def get_state(self) -> Any: ...

    def set_state(self, state: Any) -> None: ...

    def step(self, action: int) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]: ...

    def observation(self) -> np.ndarray: ...

    def action_mask(self) -> np.ndarray: ...


@dataclass
class MCTSConfig:
    """Search options (defaults: AlphaZero's, with fewer simulations for small games)."""

    num_simulations: int = 50
    """Simulations per search (each adds one node per root)."""
    c_puct: float = 1.25
    """Exploration constant of PUCT (AlphaZero's c_init; its slow log growth term is omitted:
    it only matters beyond ~20k visits)."""
    dirichlet_alpha: float = 0.3
    """Concentration of the root's Dirichlet noise (AlphaZero: 0.3 chess, 0.03 Go; ~10 / the
    typical number of legal moves)."""
    dirichlet_frac: float = 0.25
    """Weight of the noise in the root priors: ``(1 - frac) P + frac Dir(alpha)``."""
    discount: float = 1.0
    """Discount of the backup ``G <- r + discount * G`` (1 for board games; MuZero's Atari
    0.997)."""
    normalize_q: bool = False
    """Min-max normalise Q over each root's tree before PUCT (MuZero, Schrittwieser et al.
    2020, appendix B): for rewards of any scale (Atari); board games' values are in [-1, 1]."""

    def validate(self, path: str) -> None:
        """Reject impossible values at load time."""
        if self.num_simulations < 1:
            raise ConfigError(f"{path}.num_simulations: must be >= 1, got {self.num_simulations}")
        if self.c_puct < 0 or self.dirichlet_alpha <= 0:
            raise ConfigError(f"{path}: c_puct must be >= 0 and dirichlet_alpha > 0")
        if not 0.0 <= self.dirichlet_frac <= 1.0:
            raise ConfigError(f"{path}.dirichlet_frac: must be in [0, 1]")
        if not 0.0 < self.discount <= 1.0:
            raise ConfigError(f"{path}.discount: must be in (0, 1], got {self.discount}")


@dataclass
class SearchResult:
    """The root statistics of a batched search, rows = roots."""

    visit_counts: np.ndarray
    """``N(root, a)``, int64 ``(B, A)`` (0 for illegal actions)."""
    q_values: np.ndarray
    """``Q(root, a)`` for the player to move at the root, float64 ``(B, A)`` (0 unvisited)."""
    root_value: np.ndarray
    """Visit-weighted mean of the backed-up values at the root, float64 ``(B,)``."""
    priors: np.ndarray
    """The root priors the search used (noise included), float64 ``(B, A)``."""


def masked_softmax(logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """Softmax over the legal entries of each row (illegal ones get probability 0)."""
    x = np.where(legal, logits.astype(np.float64), -np.inf)
    x = np.exp(x - x.max(axis=-1, keepdims=True))
    return x / x.sum(axis=-1, keepdims=True)


def visit_policy(counts: np.ndarray, temperature: float) -> np.ndarray:
    """The search policy ``pi(a) ~ N(a)^(1/temperature)``, rows ``(B, A)``; temperature 0 is
    the argmax (one-hot, lowest index on ties)."""
    counts = np.asarray(counts, np.float64)
    if temperature == 0:
        pi = np.zeros_like(counts)
        pi[np.arange(len(counts)), counts.argmax(axis=1)] = 1.0
        return pi
    # Scale by the max first: N^(1/t) overflows float64 for small t.
    scaled = (counts / counts.max(axis=1, keepdims=True)) ** (1.0 / temperature)
    return scaled / scaled.sum(axis=1, keepdims=True)


class MCTS:
    """Batched PUCT search over ``model`` (a game with get_state/set_state) guided by
    ``evaluator`` (see the module docstring)."""

    def __init__(self, model: SearchModel, evaluator: Evaluator, cfg: MCTSConfig) -> None:
        self.model, self.evaluator, self.cfg = model, evaluator, cfg
        if model.num_players not in (1, 2):
            raise ValueError(f"MCTS supports 1 or 2 players, got {model.num_players}")
        self.sign = -1.0 if model.num_players == 2 else 1.0
        """Value sign between a node and its parent: -1 for alternating zero-sum play."""

    def _observe(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        self.model.set_state(state)
        return self.model.observation(), np.asarray(self.model.action_mask(), bool)

    def search(
        self,
        root_states: Sequence[Any],
        rngs: Sequence[np.random.Generator] | None = None,
        add_noise: bool = True,
    ) -> SearchResult:
        """Search from each of the ``B`` (non-terminal) root states; ``rngs[b]`` draws root b's
        Dirichlet noise (``add_noise`` false, or ``rngs`` None: no noise, as in evaluation)."""
        cfg, model = self.cfg, self.model
        b_size, sims = len(root_states), cfg.num_simulations
        rows = np.arange(b_size)
        # root expansion: one network call for every root
        obs, legal = zip(*(self._observe(s) for s in root_states), strict=True)
        legal_root = np.stack(legal)
        if not legal_root.any(axis=1).all():
            raise ValueError("MCTS root states must have a legal action (not terminal)")
        logits, _ = self.evaluator(np.stack(obs), legal_root)
        a_size = legal_root.shape[1]
        m_size = sims + 1
        visits = np.zeros((b_size, m_size, a_size), np.int64)
        value_sum = np.zeros((b_size, m_size, a_size))
        prior = np.zeros((b_size, m_size, a_size))
        legal_all = np.zeros((b_size, m_size, a_size), bool)
        edge_reward = np.zeros((b_size, m_size, a_size))
        child = np.full((b_size, m_size, a_size), -1, np.int64)
        terminal = np.zeros((b_size, m_size), bool)
        states: list[list[Any]] = [[s] for s in root_states]
        prior[:, 0] = masked_softmax(logits, legal_root)
        legal_all[:, 0] = legal_root
        if add_noise and rngs is not None and cfg.dirichlet_frac > 0:
            # Exploration at the root only (Silver et al. 2018): P = (1-f) P + f Dir(alpha).
            for b in range(b_size):
                idx = np.flatnonzero(legal_root[b])
                noise = rngs[b].dirichlet(np.full(len(idx), cfg.dirichlet_alpha))
                frac = cfg.dirichlet_frac
                prior[b, 0, idx] = (1 - frac) * prior[b, 0, idx] + frac * noise
        # MuZero's bounds of the Q values backed up in each root's tree (normalize_q)
        q_min, q_max = np.full(b_size, np.inf), np.full(b_size, -np.inf)
        path_node = np.zeros((b_size, m_size + 1), np.int64)
        path_action = np.zeros((b_size, m_size + 1), np.int64)
        for _ in range(sims):
            # select: descend every root's tree in lock-step until an unexpanded edge
            node = np.zeros(b_size, np.int64)
            length = np.zeros(b_size, np.int64)
            active = np.ones(b_size, bool)
            leaf_node = np.zeros(b_size, np.int64)
            leaf_action = np.zeros(b_size, np.int64)
            while active.any():
                idx = np.flatnonzero(active)
                nd = node[idx]
                n = visits[idx, nd]
                q = np.where(n > 0, value_sum[idx, nd] / np.maximum(n, 1), 0.0)
                if cfg.normalize_q:  # visited edges into [0, 1] once two Q values differ
                    lo, hi = q_min[idx, None], q_max[idx, None]
                    spread = hi > lo
                    q = np.where((n > 0) & spread, (q - lo) / np.where(spread, hi - lo, 1.0), q)
                # sqrt(max(N, 1)): at a fresh node (N = 0) the priors still order the choice.
                total = np.sqrt(np.maximum(n.sum(axis=1, keepdims=True), 1))
                score = q + cfg.c_puct * prior[idx, nd] * total / (1 + n)
                action = np.where(legal_all[idx, nd], score, -np.inf).argmax(axis=1)
                path_node[idx, length[idx]] = nd
                path_action[idx, length[idx]] = action
                length[idx] += 1
                nxt = child[idx, nd, action]
                stop = (nxt < 0) | terminal[idx, np.maximum(nxt, 0)]
                leaf_node[idx[stop]], leaf_action[idx[stop]] = nd[stop], action[stop]
                active[idx[stop]] = False
                node[idx[~stop]] = nxt[~stop]
            # expand: step the model from each leaf's parent (one new node per root)
            leaf_value = np.zeros(b_size)
            new_rows, new_nodes, new_obs, new_legal = [], [], [], []
            for b in range(b_size):
                parent, action = leaf_node[b], leaf_action[b]
                if child[b, parent, action] >= 0:
                    continue  # a terminal node visited again: value 0, reward on the edge
                model.set_state(states[b][parent])
                ob, reward, term, trunc, _ = model.step(int(action))
                ended = term or trunc  # a truncated episode is a leaf of value 0 here too
                new = len(states[b])
                states[b].append(model.get_state())
                child[b, parent, action] = new
                edge_reward[b, parent, action] = float(reward)
                terminal[b, new] = ended
                if not ended:
                    mask = np.asarray(model.action_mask(), bool)
                    legal_all[b, new] = mask
                    new_rows.append(b)
                    new_nodes.append(new)
                    new_obs.append(ob)
                    new_legal.append(mask)
            # evaluate: the leaves of every root in one network call
            if new_rows:
                legal_new = np.stack(new_legal)
                logits, value = self.evaluator(np.stack(new_obs), legal_new)
                prior[new_rows, new_nodes] = masked_softmax(logits, legal_new)
                leaf_value[new_rows] = value
            # backup: G <- r + sign * discount * G along each path, deepest edge first
            ret = leaf_value
            factor = self.sign * cfg.discount
            for d in range(int(length.max()) - 1, -1, -1):
                idx = np.flatnonzero(length > d)
                nd, act = path_node[idx, d], path_action[idx, d]
                ret[idx] = edge_reward[idx, nd, act] + factor * ret[idx]
                value_sum[idx, nd, act] += ret[idx]
                visits[idx, nd, act] += 1
                if cfg.normalize_q:
                    q_new = value_sum[idx, nd, act] / visits[idx, nd, act]
                    q_min[idx] = np.minimum(q_min[idx], q_new)
                    q_max[idx] = np.maximum(q_max[idx], q_new)
        n_root = visits[:, 0]
        q_root = np.where(n_root > 0, value_sum[:, 0] / np.maximum(n_root, 1), 0.0)
        root_value = value_sum[:, 0].sum(axis=1) / np.maximum(n_root.sum(axis=1), 1)
        return SearchResult(n_root.copy(), q_root, root_value, prior[rows, 0].copy())
