"""R2D2: value rescaling, sequence priorities, burn-in gradient isolation, stored states
replayed at window starts, and a tiny r2d2_catch run that checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from reprl.agents.r2d2 import inverse_value_rescale, sequence_priority, value_rescale
from reprl.config import load_config
from reprl.runs import checkpoint as ckpt
from reprl.train import train

QUIET = ["logger.progress=false", "logger.tensorboard=false", "eval.episodes=2"]
TINY = [
    "experiment=r2d2_catch",
    "env.num_envs=4",
    "total_steps=320",
    "agent.learning_starts=64",
    "agent.batch_size=8",
    "agent.train_freq=8",
    "agent.gradient_steps=2",
    "agent.target_update_period=4",
    "eval.every_steps=0",
    *QUIET,
]


def test_value_rescale_formula_and_inverse() -> None:
    x = torch.linspace(-1000.0, 1000.0, 2001, dtype=torch.float64)
    eps = 1e-3
    expected = torch.sign(x) * (torch.sqrt(x.abs() + 1) - 1) + eps * x
    torch.testing.assert_close(value_rescale(x, eps), expected)
    torch.testing.assert_close(inverse_value_rescale(value_rescale(x, eps), eps), x)
    torch.testing.assert_close(value_rescale(inverse_value_rescale(x, eps), eps), x)
    assert value_rescale(torch.tensor(3.0), 0.0).item() == 1.0  # sqrt(4) - 1


def test_sequence_priority_by_hand() -> None:
    td = torch.tensor([[1.0, 3.0, 2.0, 10.0], [0.5, 0.5, 0.5, 0.5]])
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    got = sequence_priority(td, mask, 0.9)
    # row 0: max 3, mean 2 -> 0.9 * 3 + 0.1 * 2 = 2.9; row 1: 0.5
    torch.testing.assert_close(got, torch.tensor([2.9, 0.5]))


def _collected(tmp_path: Path) -> tuple:
    """An R2D2 agent and its source after collecting 256 steps without learning (fixed
    weights, so the actor's states can be recomputed), captured from ``train``."""
    from reprl.agents import r2d2 as mod

    captured: dict = {}
    original = mod.R2D2.make_source

    def spy(self, envs, seed, device):  # keep the agent and its source for the test
        source = original(self, envs, seed, device)
        captured["agent"], captured["source"] = self, source
        return source

    mod.R2D2.make_source = spy
    try:
        cfg = load_config(
            [*TINY, "agent.burn_in=3", "total_steps=256", "agent.learning_starts=100000"]
            + [f"run_dir={tmp_path}"]
        )
        train(cfg)
    finally:
        mod.R2D2.make_source = original
    return captured["agent"], captured["source"]


def test_stored_state_and_burn_in(tmp_path: Path) -> None:
    agent, source = _collected(tmp_path)
    buffer = source.buffer
    rng = np.random.default_rng(0)
    cfg = agent.cfg
    mb = buffer.sample(8, rng, n_step=cfg.n_step, seq_len=cfg.burn_in + cfg.seq_len)

    # The state stored before every step is the actor's: re-running each env's whole
    # stored sequence from the zero state (step 0 is an episode start) reproduces it.
    assert buffer.count <= buffer.capacity_per_env and buffer.is_first[:, 0].all()
    model, neck = agent.model, agent.model.neck
    obs = torch.from_numpy(buffer.obs[:, : buffer.count])
    first = torch.from_numpy(buffer.is_first[:, : buffer.count])
    state = model.initial_state(buffer.num_envs, "cpu")
    states = []
    with torch.no_grad():
        for t in range(buffer.count):
            states.append(neck.state_to_batch(state)[:, 0])
            (_, state), _ = model(obs[:, t : t + 1], state, first[:, t : t + 1])
    replayed = torch.stack(states, 1).numpy()
    np.testing.assert_allclose(buffer.state[:, : buffer.count], replayed, atol=1e-5)
    assert np.abs(replayed).max() > 0  # not trivially zero
    # ... and a sampled window carries the state stored at its first step.
    index = mb.extras["index"][:, 0].numpy()
    c = buffer.capacity_per_env
    np.testing.assert_array_equal(mb.extras["state"][:, 0].numpy(), replayed[index // c, index % c])

    # Burn-in: no gradient reaches the burned-in observations.
    obs = mb.obs.clone().requires_grad_(True)
    mb.obs = obs
    q, target_q = agent.unroll(mb)
    assert not target_q.requires_grad
    q.sum().backward()
    k = cfg.burn_in
    assert obs.grad is not None
    assert obs.grad[:, :k].abs().sum().item() == 0.0
    assert obs.grad[:, k:].abs().sum().item() > 0.0


def test_r2d2_catch_trains_and_checkpoints(tmp_path: Path) -> None:
    result = train(load_config([*TINY, "agent.replay_in_checkpoint=true", f"run_dir={tmp_path}"]))
    assert result.global_step == 320
    state = ckpt.load(ckpt.resolve(tmp_path))
    assert state["agent"]["gradient_steps"] > 0
    assert "target" in state["agent"]
    assert len(state["source"]["buffer"]["state"]) == 4  # the stored recurrent states
