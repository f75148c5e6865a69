"""The collection fast paths equal the general ones: acting features and Q-values, DQN's
epsilon-greedy draws, the replay buffer's multi-step add and the env's action clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprl.config import load_config
from reprl.data.replay import ReplayBuffer
from reprl.envs import make_vector_env
from reprl.train import make_agent

DQN_SWITCHES = [
    [],
    ["model.policy.dueling=true"],
    ["model.policy.num_atoms=11"],
    ["model.policy.noisy=true"],
    ["model.backbone.hidden_sizes=[16]"],
]


def _dqn(switches: list[str]):
    cfg = load_config(["experiment=dqn_cartpole", "logger.progress=false", *switches])
    envs = make_vector_env(cfg.env, seed=0)
    torch.manual_seed(0)
    return make_agent(cfg, envs.spec, torch.device("cpu"))


@pytest.mark.parametrize("switches", DQN_SWITCHES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 1), (3, 4)])
def test_acting_q_values_equal_forward(switches: list[str], shape: tuple[int, int]) -> None:
    """``act_features`` and ``q_values`` give bitwise the features and Q-values of the full
    forward, for every Q head and for a backbone with hidden layers."""
    agent = _dqn(switches)
    model = agent.model
    obs = torch.randn(*shape, 4)
    is_first = torch.zeros(shape, dtype=torch.bool)
    with torch.inference_mode():
        (ref_features, _), _ = model.features(obs, None, is_first)
        features, state = model.act_features(obs, None, is_first)
        assert state is None
        assert torch.equal(features, ref_features)
        (out, _), _ = model(obs, None, is_first)
        assert torch.equal(model.policy.q_values(features), out.q)


def _reference_act(agent, obs: torch.Tensor, is_first: torch.Tensor) -> torch.Tensor:
    """DQN's epsilon-greedy in torch ops on the full forward (the general path)."""
    with torch.inference_mode():
        (out, _), _ = agent.model(obs, None, is_first)
        action = out.q.argmax(-1)
        if agent.epsilon > 0:
            explore = torch.rand(action.shape) < agent.epsilon
            if explore.any():
                random = torch.randint(0, agent.num_actions, action.shape)
                action = torch.where(explore, random, action)
    return action


@pytest.mark.parametrize("epsilon", [0.0, 0.04, 0.5, 1.0])
def test_dqn_act_equals_general_path(epsilon: float) -> None:
    """The same actions and the same torch RNG state after each step as the torch reference."""
    agent = _dqn([])
    agent.epsilon = epsilon
    for n in (1, 7):
        obs = torch.randn(n, 1, 4)
        is_first = torch.zeros((n, 1), dtype=torch.bool)
        for seed in range(20):
            torch.manual_seed(seed)
            ref = _reference_act(agent, obs, is_first)
            ref_rng = torch.get_rng_state()
            torch.manual_seed(seed)
            action, extras, state = agent.act(obs, None, is_first)
            assert torch.equal(action, ref) and extras == {} and state is None
            assert torch.equal(torch.get_rng_state(), ref_rng)


def test_sac_act_features_equal_encode() -> None:
    """SAC acts on ``encode``'s features (``act_features``): bitwise the model's general
    ``features``, hence the same actions."""
    cfg = load_config(["experiment=sac_pendulum", "logger.progress=false"])
    envs = make_vector_env(cfg.env, seed=0)
    agent = make_agent(cfg, envs.spec, torch.device("cpu"))
    obs = torch.randn(2, 1, 3)
    is_first = torch.zeros((2, 1), dtype=torch.bool)
    with torch.inference_mode():
        (ref, _), _ = agent.model.features(obs, None, is_first)
        features, _ = agent.encode(obs, None, is_first)
    assert torch.equal(features, ref)


def _stream(n: int, steps: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    valid = rng.random((n, steps)) > 0.2
    return {
        "obs": rng.integers(0, 255, (n, steps, 4, 3), dtype=np.uint8),
        "action": rng.integers(0, 6, (n, steps)),
        "reward": rng.standard_normal((n, steps)).astype(np.float32),
        "terminated": rng.random((n, steps)) < 0.1,
        "truncated": rng.random((n, steps)) < 0.1,
        "valid": valid,
        "is_first": rng.random((n, steps)) < 0.1,
    }


KEYS = ("obs", "action", "reward", "terminated", "truncated", "valid", "is_first")


@pytest.mark.filterwarnings("ignore:ReplayBuffer. the first stored stack")  # random frames
@pytest.mark.parametrize("kw", [{}, {"frame_stack": 2}, {"prioritized": True}])
@pytest.mark.parametrize("chunks", [[1, 1, 1], [3, 4, 5], [7, 6], [25], [4, 9, 9, 3]])
def test_add_steps_equals_add_per_step(kw: dict, chunks: list[int]) -> None:
    """Chunks of steps (inside the ring, across its wrap, longer than it) are stored as the
    per-step :meth:`ReplayBuffer.add` stores them."""
    n, cap = 2, 10
    s = _stream(n, sum(chunks), seed=len(chunks))
    one = ReplayBuffer(n, cap, (4, 3), np.uint8, **kw)
    many = ReplayBuffer(n, cap, (4, 3), np.uint8, **kw)
    for t in range(sum(chunks)):
        one.add(*(s[k][:, t] for k in KEYS))
    start = 0
    for size in chunks:
        many.add_steps(*(s[k][:, start : start + size] for k in KEYS))
        start += size
    assert one.count == many.count
    assert np.array_equal(one._next_first, many._next_first)
    for name in ("obs", "action", "reward", "terminated", "truncated", "valid", "is_first"):
        assert np.array_equal(getattr(one, name), getattr(many, name)), name
    assert np.array_equal(one.reset, many.reset)
    if one.sampler is not None and many.sampler is not None:
        assert np.array_equal(one.sampler.tree._tree, many.sampler.tree._tree)


def test_clipped_actions_equal_np_clip() -> None:
    """Continuous actions are clipped as ``np.clip`` does (NaN kept), into a new array."""
    cfg = load_config(["experiment=sac_pendulum", "logger.progress=false", "env.num_envs=4"])
    envs = make_vector_env(cfg.env, seed=0)
    spec = envs.spec
    raw = np.array([[-5.0], [0.3], [np.nan], [2.0000001]], np.float32)
    kept = raw.copy()
    out = envs._prepare_actions(raw)
    ref = np.clip(raw, spec.action_low, spec.action_high).astype(np.float32)
    assert out.dtype == np.float32 and np.array_equal(out, ref, equal_nan=True)
    assert np.array_equal(raw, kept, equal_nan=True)
