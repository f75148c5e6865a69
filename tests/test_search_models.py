"""Search models (reprl/search/models.py) and MCTS's single-player options: any env whose state
can be saved and restored (Atari through ALE's cloneState, DeepSea through the snapshot) is a
model the search plans with; discounted backups; min-max normalised Q (MuZero); AlphaZero
self-play on Atari end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reprl.agents.alphazero import outcomes
from reprl.config import load_config
from reprl.envs import EnvConfig
from reprl.errors import ConfigError
from reprl.runs import checkpoint as ckpt
from reprl.search.mcts import MCTS, MCTSConfig
from reprl.search.models import EnvSearchModel, make_search_model
from reprl.train import train

ZERO = lambda obs, legal: (np.zeros(legal.shape), np.zeros(len(obs)))  # noqa: E731


def replay(model, state, actions):
    model.set_state(state)
    return [model.step(a)[:3] for a in actions]


@pytest.mark.atari
def test_atari_state_round_trip_replays_the_same_game() -> None:
    model = make_search_model(EnvConfig(id="ALE/Pong-v5"))
    assert isinstance(model, EnvSearchModel) and model.num_actions == 6
    model.reset(seed=3)
    for a in [1, 2, 3] * 10:
        model.step(a)
    state = model.get_state()
    obs = model.observation().copy()
    actions = np.random.default_rng(0).integers(6, size=40).tolist()
    first = replay(model, state, actions)
    second = replay(model, state, actions)
    for (o1, r1, t1), (o2, r2, t2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(o1, o2)
        assert (r1, t1) == (r2, t2)
    assert not np.array_equal(first[-1][0], obs)  # the game moved on
    model.set_state(state)  # ... and the saved state was not aliased by the replays
    np.testing.assert_array_equal(model.observation(), obs)
    assert model.observation().dtype == np.uint8 and obs.shape == (4, 84, 84)
    # MCTS runs on the emulator: every simulation adds one visit at the root
    res = MCTS(model, ZERO, MCTSConfig(num_simulations=6, normalize_q=True)).search([state])
    assert res.visit_counts.sum() == 6


def test_search_plans_deep_sea_with_the_true_env() -> None:
    """Pure search (no network, zero values) on DeepSea-4 through the generic snapshot model:
    only four consecutive 'right' moves (a per-cell random action map) reach the treasure,
    and 64 simulations per move find them."""
    game = make_search_model("DeepSea-4-v0")
    model = make_search_model("DeepSea-4-v0")
    mcts = MCTS(model, ZERO, MCTSConfig(num_simulations=64))
    game.reset(seed=0)
    total, done = 0.0, False
    while not done:
        best = game.env.unwrapped.optimal_action()
        action = int(mcts.search([game.get_state()], add_noise=False).visit_counts[0].argmax())
        assert action == best
        _, reward, done, _, _ = game.step(action)
        total += reward
    assert total == pytest.approx(1.0 - 0.01)


class Chain:
    """A deterministic single-player chain: action 1 moves on (reward ``scale * gains[t]``),
    action 0 ends the episode with ``scale * stop``."""

    num_players, current_player = 1, 0

    def __init__(self, gains: list[float], stop: float, scale: float = 1.0) -> None:
        self.gains, self.stop, self.scale, self.t = gains, stop, scale, 0

    def get_state(self) -> int:
        return self.t

    def set_state(self, state: int) -> None:
        self.t = state

    def observation(self) -> np.ndarray:
        return np.array([self.t], np.float32)

    def action_mask(self) -> np.ndarray:
        return np.ones(2, bool)

    def step(self, action: int):
        if action == 0 or self.t == len(self.gains) - 1:
            reward = self.stop if action == 0 else self.gains[self.t]
            return self.observation(), self.scale * reward, True, False, {}
        self.t += 1
        return self.observation(), self.scale * self.gains[self.t - 1], False, False, {}


def test_discounted_backup_values_the_chain() -> None:
    """With many simulations the root's Q of 'move on' is the discounted return of the best
    continuation: 0.5 + g * max(stop, 0.5 + g * max(stop, 1))."""
    g, stop = 0.9, 0.2
    mcts = MCTS(Chain([0.5, 0.5, 1.0], stop), ZERO, MCTSConfig(200, discount=g))
    res = mcts.search([0], add_noise=False)
    assert res.q_values[0, 0] == pytest.approx(stop)
    expected_best = 0.5 + g * (0.5 + g * 1.0)
    # Q is a visit-weighted mean over the subtree: it approaches the best continuation
    assert expected_best - 0.1 < res.q_values[0, 1] <= expected_best + 1e-9
    assert res.visit_counts[0].argmax() == 1
    np.testing.assert_allclose(outcomes([0.5, 0.5, 1.0], 1, g), [expected_best, 0.5 + g, 1.0])


@pytest.mark.parametrize("normalize_q", [False, True])
def test_normalized_q_makes_the_search_scale_invariant(normalize_q: bool) -> None:
    """MuZero's min-max normalisation: rewards x1000 give the same visit counts as x1 (without
    it, Q swamps the prior term and the search stops exploring)."""
    counts = []
    for scale in (1.0, 1000.0):
        chain = Chain([0.1, -0.2, 0.3, 0.05], 0.0, scale)
        mcts = MCTS(chain, ZERO, MCTSConfig(60, normalize_q=normalize_q))
        counts.append(mcts.search([0], add_noise=False).visit_counts)
    assert np.array_equal(counts[0], counts[1]) == normalize_q


def test_envs_that_cannot_save_their_state_are_refused() -> None:
    pytest.importorskip("Box2D")
    with pytest.raises(ConfigError, match="cannot be searched"):
        make_search_model("LunarLander-v3")
    with pytest.raises(ConfigError, match="discrete actions"):
        make_search_model("Pendulum-v1")


@pytest.mark.atari
def test_alphazero_self_play_on_atari(tmp_path: Path) -> None:
    """The alphazero_atari preset, shrunk: self-play searches the emulator, the replay keeps
    uint8 frames, the arena reports a mean return, and the run checkpoints."""
    cfg = load_config(
        [
            "experiment=alphazero_atari",
            "env.max_episode_steps=10",
            "agent.num_games=2",
            "agent.num_simulations=3",
            "agent.learning_starts=8",
            "agent.batch_size=8",
            "agent.updates_per_iteration=2",
            "agent.arena_every=1",
            "agent.arena_games=2",
            "total_steps=40",
            "eval.episodes=1",
            "eval.every_steps=0",
            "logger.progress=false",
            "logger.tensorboard=false",
            f"run_dir={tmp_path}",
        ]
    )
    result = train(cfg)
    assert result.global_step >= 40
    state = ckpt.load(ckpt.resolve(tmp_path))
    assert state["source"]["buffer"]["obs"].dtype == torch.uint8
    rows = (tmp_path / "metrics.jsonl").read_text()
    assert '"arena/mean_return"' in rows and '"losses/rl_value"' in rows
