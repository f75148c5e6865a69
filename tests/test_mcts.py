"""Batched MCTS (reprl/search/mcts.py) against a slow reference search and exact minimax."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reprl.envs.games import CatchEnv, make_game
from reprl.search import MCTS, MCTSConfig, masked_softmax, visit_policy

# A two-level two-player game: player 0 picks a in {0, 1, 2}, player 1 picks b in {0, 1, 2};
# the outcome for player 0 is LEAF[a][b]. Action 2 at the first level is illegal.
LEAF = [[1.0, 0.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]


class TwoLevelGame:
    """State: the moves so far (a tuple). Minimax value for player 0: 0 (move 0: min(1, 0, 0)
    = 0; move 1: min(1, -1, 0) = -1)."""

    num_players = 2

    def __init__(self) -> None:
        self.moves: tuple[int, ...] = ()

    def get_state(self):
        return self.moves

    def set_state(self, state) -> None:
        self.moves = tuple(state)

    def observation(self) -> np.ndarray:
        obs = np.zeros(7, np.float32)
        obs[len(self.moves)] = 1
        for i, m in enumerate(self.moves):
            obs[3 + 2 * i + min(m, 1)] = 1
        return obs

    def action_mask(self) -> np.ndarray:
        return np.array([True, True, len(self.moves) == 1])

    def step(self, action: int):
        self.moves = (*self.moves, int(action))
        if len(self.moves) == 2:
            a, b = self.moves
            # reward of the mover (player 1) is minus player 0's outcome
            return self.observation(), -LEAF[a][b], True, False, {}
        return self.observation(), 0.0, False, False, {}


def fixed_net(obs: np.ndarray, legal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic 'network': logits and values from the observation alone."""
    w = np.linspace(-1, 1, obs[0].size * legal.shape[1]).reshape(obs[0].size, -1)
    flat = obs.reshape(len(obs), -1).astype(np.float64)
    return flat @ w, np.tanh(flat.sum(1) * 0.1 - 0.3)


class RefNode:
    def __init__(self, state, prior: np.ndarray, legal: np.ndarray) -> None:
        self.state, self.prior, self.legal = state, prior, legal
        self.n = np.zeros(len(prior))
        self.w = np.zeros(len(prior))
        self.children: dict[int, tuple[RefNode | None, float]] = {}


def reference_search(model, evaluate, root_state, sims: int, c_puct: float, sign: float):
    """Slow recursive PUCT search with the same rules as reprl's batched one."""

    def expand(state):
        model.set_state(state)
        legal = model.action_mask()
        logits, value = evaluate(model.observation()[None], legal[None])
        return RefNode(state, masked_softmax(logits, legal[None])[0], legal), float(value[0])

    root, _ = expand(root_state)

    def simulate(node: RefNode) -> float:
        q = np.where(node.n > 0, node.w / np.maximum(node.n, 1), 0.0)
        u = c_puct * node.prior * math.sqrt(max(node.n.sum(), 1)) / (1 + node.n)
        a = int(np.where(node.legal, q + u, -np.inf).argmax())
        if a in node.children:
            child, reward = node.children[a]
            g = reward + (0.0 if child is None else sign * simulate(child))
        else:
            model.set_state(node.state)
            _, reward, term, _, _ = model.step(a)
            if term:
                node.children[a] = (None, float(reward))
                g = float(reward)
            else:
                child, value = expand(model.get_state())
                node.children[a] = (child, float(reward))
                g = float(reward) + sign * value
        node.n[a] += 1
        node.w[a] += g
        return g

    for _ in range(sims):
        simulate(root)
    return root.n


@pytest.mark.parametrize("sims", [1, 2, 7, 40])
def test_matches_reference_on_two_level_game(sims: int) -> None:
    model = TwoLevelGame()
    mcts = MCTS(model, fixed_net, MCTSConfig(num_simulations=sims, c_puct=1.5))
    res = mcts.search([()], add_noise=False)
    ref = reference_search(TwoLevelGame(), fixed_net, (), sims, 1.5, -1.0)
    np.testing.assert_array_equal(res.visit_counts[0], ref)
    assert res.visit_counts[0, 2] == 0  # illegal action never visited


def test_two_level_game_converges_to_minimax() -> None:
    zero = lambda obs, legal: (np.zeros(legal.shape), np.zeros(len(obs)))  # noqa: E731
    res = MCTS(TwoLevelGame(), zero, MCTSConfig(num_simulations=3000)).search([()])
    assert res.visit_counts[0].argmax() == 0  # minimax-best move
    assert abs(res.q_values[0, 0] - 0.0) < 0.05
    assert res.q_values[0, 1] < -0.5
    # after move 1 the second player must find the refutation b = 1
    res = MCTS(TwoLevelGame(), zero, MCTSConfig(num_simulations=500)).search([(1,)])
    assert res.visit_counts[0].argmax() == 1 and res.q_values[0, 1] > 0.9


def test_tictactoe_finds_win_and_block() -> None:
    zero = lambda obs, legal: (np.zeros(legal.shape), np.zeros(len(obs)))  # noqa: E731
    game = make_game("TicTacToe-v0")
    game.reset(seed=0)
    board = np.zeros((3, 3), np.int8)
    board[0, :2] = 1  # X threatens 2
    board[1, :2] = 2  # O threatens 5
    win = (board.copy(), 0, False, 0)
    block_board = board.copy()
    block_board[2, 2] = 1  # now it is O's move: O wins at 5
    mcts = MCTS(game, zero, MCTSConfig(num_simulations=400))
    res = mcts.search([win, (block_board, 1, False, 0)])
    assert res.visit_counts[0].argmax() == 2 and res.visit_counts[1].argmax() == 5
    assert res.q_values[0, 2] == pytest.approx(1.0)


def test_single_player_catch_no_sign_flip() -> None:
    zero = lambda obs, legal: (np.zeros(legal.shape), np.zeros(len(obs)))  # noqa: E731
    env = CatchEnv()
    env.reset(seed=0)
    env.set_state((0, 6, 2))  # ball in column 0, three rows above the paddle in column 2
    res = MCTS(env, zero, MCTSConfig(num_simulations=300)).search([env.get_state()])
    assert res.visit_counts[0].argmax() == 0  # move left: the only way to catch it
    # Q is the mean over the subtree (it still holds exploratory misses), no flip: positive
    assert res.q_values[0, 0] > 0.8 and res.q_values[0, 2] < 0


def _random_positions(env_id: str, count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    game, states = make_game(env_id), []
    while len(states) < count:
        game.reset(seed=int(rng.integers(1 << 30)))
        for _ in range(int(rng.integers(0, 4))):
            game.step(int(rng.choice(np.flatnonzero(game.action_mask()))))
        if game.action_mask().any():
            states.append(game.get_state())
    return states


@pytest.mark.parametrize("env_id", ["TicTacToe-v0", "ConnectFour-v0"])
def test_batched_equals_alone(env_id: str) -> None:
    """B = 1, 16, 64 roots searched together give each root the counts it gets alone."""
    torch.manual_seed(0)
    game = make_game(env_id)
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(int(np.prod(game.observation_space.shape)), 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, game.action_space.n + 1),
    ).double()

    @torch.no_grad()
    def evaluate(obs: np.ndarray, legal: np.ndarray):
        # Row by row: one row's result must not depend on the batch it is in (BLAS may sum
        # in another order for another batch size; the search itself is what is tested).
        out = torch.cat([net(torch.from_numpy(o[None]).double()) for o in obs])
        return out[:, :-1].numpy(), torch.tanh(out[:, -1]).numpy()

    states = _random_positions(env_id, 64, seed=1)
    cfg = MCTSConfig(num_simulations=16)
    alone = [
        MCTS(game, evaluate, cfg).search([s], [np.random.default_rng(i)]).visit_counts[0]
        for i, s in enumerate(states)
    ]
    for b in (1, 16, 64):
        rngs = [np.random.default_rng(i) for i in range(b)]
        res = MCTS(game, evaluate, cfg).search(states[:b], rngs)
        np.testing.assert_array_equal(res.visit_counts, np.stack(alone[:b]))
        assert (res.visit_counts.sum(1) == 16).all()
        masks = []
        for s in states[:b]:
            game.set_state(s)
            masks.append(game.action_mask())
        assert (res.visit_counts[~np.stack(masks)] == 0).all()


def test_deterministic_and_noise() -> None:
    game = make_game("TicTacToe-v0")
    game.reset(seed=0)
    root = game.get_state()  # (the search overwrites the model's own state)
    cfg = MCTSConfig(num_simulations=30)
    runs = [MCTS(game, fixed_net, cfg).search([root], [np.random.default_rng(5)]) for _ in "ab"]
    np.testing.assert_array_equal(runs[0].visit_counts, runs[1].visit_counts)
    np.testing.assert_array_equal(runs[0].priors, runs[1].priors)
    quiet = MCTS(game, fixed_net, cfg).search([root], add_noise=False)
    assert not np.allclose(quiet.priors, runs[0].priors)
    assert runs[0].priors.sum() == pytest.approx(1.0)


def test_visit_policy() -> None:
    counts = np.array([[1, 3, 0, 3]])
    np.testing.assert_allclose(visit_policy(counts, 1.0), [[1 / 7, 3 / 7, 0, 3 / 7]])
    np.testing.assert_array_equal(visit_policy(counts, 0.0), [[0, 1, 0, 0]])
    assert visit_policy(counts, 0.01)[0, 0] < 1e-30
