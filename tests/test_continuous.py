"""SAC, TD3 and DDPG: the actor_q policy against slow references, the summed-loss update
against separate updates, config errors, resume, and learning Pendulum for fixed seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reprl.config import load_config
from reprl.errors import ConfigError
from reprl.models.actor_q import ActorQConfig, ActorQPolicy
from reprl.optim.optimizers import Adam, OptimizerSet
from reprl.runs import checkpoint as ckpt
from reprl.train import make_agent, train
from reprl.types import EnvSpec

QUIET = ["logger.progress=false", "logger.tensorboard=false"]


def pendulum_like(dim: int = 2, low: float = -2.0, high: float = 3.0) -> EnvSpec:
    return EnvSpec(
        env_id="Test-v0",
        obs_shape=(5,),
        obs_dtype=np.dtype(np.float32),
        action_type="continuous",
        action_shape=(dim,),
        action_low=np.full(dim, low, np.float32),
        action_high=np.full(dim, high, np.float32),
    )


def test_squashed_gaussian_log_prob_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    policy = ActorQPolicy(ActorQConfig(actor_hidden=[16], critic_hidden=[16]), 7, pendulum_like())
    features = torch.randn(64, 1, 7)
    torch.manual_seed(1)
    action, log_prob = policy.sample(features)
    out, _ = policy(features)
    torch.manual_seed(1)
    base = torch.distributions.Normal(out.mean, out.log_std.exp())
    squashed = torch.distributions.TransformedDistribution(
        base, [torch.distributions.TanhTransform(cache_size=1)]
    )
    u = out.mean + out.log_std.exp() * torch.randn_like(out.mean)  # same draw as sample()
    torch.testing.assert_close(action, torch.tanh(u), rtol=1e-6, atol=1e-6)
    want = squashed.log_prob(torch.tanh(u)).sum(-1)
    torch.testing.assert_close(log_prob, want, rtol=1e-4, atol=1e-3)
    assert action.abs().max() <= 1.0


def test_action_scaling_and_critic_shapes() -> None:
    spec = pendulum_like(dim=3, low=-2.0, high=3.0)
    policy = ActorQPolicy(ActorQConfig(num_critics=3, critic_hidden=[8, 8]), 4, spec)
    a = torch.tensor([[-1.0, 0.0, 1.0]])
    torch.testing.assert_close(policy.to_env(a), torch.tensor([[-2.0, 0.5, 3.0]]))
    torch.testing.assert_close(policy.from_env(policy.to_env(a)), a)
    q = policy.q(torch.randn(5, 2, 4), torch.rand(5, 2, 3))
    assert q.shape == (3, 5, 2)


def test_stacked_critics_equal_separate_mlps() -> None:
    torch.manual_seed(0)
    policy = ActorQPolicy(ActorQConfig(critic_hidden=[8, 6]), 4, pendulum_like())
    x, a = torch.randn(10, 4), torch.rand(10, 2) * 2 - 1
    q = policy.q(x, a)
    critics = policy.critics
    for j in range(2):
        h = torch.cat([x, a], -1)
        for i in range(2):
            w, b = critics.hidden.layer(i, j)
            h = torch.relu(h @ w.T + b)
        want = h @ critics.out_weight[j] + critics.out_bias[j, 0]
        torch.testing.assert_close(q[j], want[:, 0])


def test_detached_critics_pass_gradient_to_the_action_only() -> None:
    policy = ActorQPolicy(ActorQConfig(critic_hidden=[8]), 4, pendulum_like())
    a = torch.zeros(3, 2, requires_grad=True)
    policy.q(torch.randn(3, 4), a, detach_params=True).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert all(p.grad is None for p in policy.critic_parameters())


def test_optimizer_set_equals_separate_adams() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=True)
    a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    opt = OptimizerSet(x=Adam([a], lr=0.1), y=Adam([b], lr=0.01))
    ref = [torch.optim.Adam([a2], lr=0.1), torch.optim.Adam([b2], lr=0.01)]
    for step in range(3):
        opt.zero_grad()
        (a.square().sum() + (b * step).sum()).backward()
        opt.step()
        for o in ref:
            o.zero_grad()
        (a2.square().sum() + (b2 * step).sum()).backward()
        for o in ref:
            o.step()
    torch.testing.assert_close(a, a2)
    torch.testing.assert_close(b, b2)
    state = opt.state_dict()
    assert set(state) == {"x", "y"}
    opt.load_state_dict(state)


def _sac(extra: list[str] = ()) -> object:
    cfg = load_config(["experiment=sac_pendulum", "agent.batch_size=16", *extra])
    from reprl.envs import make_env_spec

    return make_agent(cfg, make_env_spec(cfg.env), torch.device("cpu"))


def _window_batch(agent: object) -> object:
    """Windows of 2 steps sampled from a small buffer of random Pendulum-shaped steps."""
    from reprl.data.replay import ReplayBuffer

    buffer = ReplayBuffer.from_spec(agent.spec, 1, 64)
    rng = np.random.default_rng(0)
    for _ in range(40):
        buffer.add(
            rng.normal(size=(1, 3)).astype(np.float32),
            rng.uniform(-2, 2, size=(1, 1)),
            rng.normal(size=1),
            np.zeros(1, bool),
            np.zeros(1, bool),
            np.ones(1, bool),
        )
    return buffer.sample(16, np.random.default_rng(1), n_step=1)


def test_summed_losses_update_like_separate_updates() -> None:
    """One backward of critic + actor + alpha losses gives each part exactly its own loss's
    gradient (the actor's loss does not reach the critics and vice versa)."""
    torch.manual_seed(0)
    agent = _sac()
    mb = _window_batch(agent)
    grads = {}
    for keep in (None, "loss_rl_critic", "loss_rl_actor", "loss_rl_alpha"):
        torch.manual_seed(5)
        losses, _ = agent.compute_loss(mb)
        assert set(losses) == {"loss_rl_critic", "loss_rl_actor", "loss_rl_alpha"}
        total = sum(v for k, v in losses.items() if keep is None or k == keep)
        agent.optimizer.zero_grad()
        total.backward()
        grads[keep] = [None if p.grad is None else p.grad.clone() for p in agent.optimizer.params]
    for i, g in enumerate(grads[None]):
        parts = [grads[k][i] for k in ("loss_rl_critic", "loss_rl_actor", "loss_rl_alpha")]
        nonzero = [p for p in parts if p is not None]
        assert len(nonzero) == 1, f"parameter {i} gets gradient from {len(nonzero)} losses"
        torch.testing.assert_close(g, nonzero[0])


@pytest.mark.parametrize("target_entropy, grows", [(10.0, True), (-100.0, False)])
def test_alpha_autotuning_moves_toward_the_target_entropy(
    target_entropy: float, grows: bool
) -> None:
    """Entropy below an (unreachably high) target raises alpha; above a low one lowers it."""
    agent = _sac([f"agent.target_entropy={target_entropy}"])
    before = agent.alpha.item()
    mb = _window_batch(agent)
    for _ in range(3):
        losses, info = agent.compute_loss(mb)
        agent.update(losses)
    assert (agent.alpha.item() > before) == grows
    assert info["stats/alpha"].item() != before


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["experiment=sac_pendulum", "env=cartpole"], "continuous"),
        (["experiment=td3_pendulum", "model/policy=actor_q"], "deterministic"),
        (["experiment=sac_pendulum", "model/policy=td3"], "gaussian"),
        (["experiment=sac_pendulum", "agent.augment=random_shift"], "image"),
        (["experiment=sac_pendulum", "agent.augment=flip"], "augment"),
        (["experiment=sac_pendulum", "model/policy=q"], "discrete"),
    ],
)
def test_config_errors(overrides: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        train(load_config([*overrides, "total_steps=8", *QUIET, f"run_dir={tmp_path}"]))


@pytest.mark.parametrize("name", ["sac_pendulum", "td3_pendulum", "ddpg_pendulum"])
def test_resume_continues_with_targets_and_counters(name: str, tmp_path: Path) -> None:
    small = [
        f"experiment={name}",
        "total_steps=300",
        "agent.learning_starts=100",
        "agent.train_freq=50",
        "agent.gradient_steps=10",
        "agent.batch_size=16",
        "agent.replay_in_checkpoint=true",
        "model.policy.actor_hidden=[16]",
        "model.policy.critic_hidden=[16]",
        "eval.every_steps=0",
        "eval.episodes=1",
        *QUIET,
    ]
    run = tmp_path / "run"
    train(load_config([*small, f"run_dir={run}"]))
    state = ckpt.load(ckpt.resolve(run))
    assert state["agent"]["gradient_steps"] == 50  # from the 2nd collection of 50 steps on
    assert "target" in state["agent"] and "buffer" in state["source"]
    assert ("alpha" in state["agent"]["extra"]) == (name == "sac_pendulum")
    result = train(load_config(["total_steps=400", *QUIET, f"resume={run}"]))
    assert result.global_step == 400
    assert ckpt.load(ckpt.resolve(run))["agent"]["gradient_steps"] == 70


@pytest.mark.slow
def test_sac_learns_pendulum(tmp_path: Path) -> None:
    cfg = load_config(["experiment=sac_pendulum", "seed=1", *QUIET, f"run_dir={tmp_path}"])
    result = train(cfg)
    assert result.final_eval is not None and result.final_eval["mean_return"] >= -250


FAST_PENDULUM = [
    "seed=1",
    "agent.learning_starts=1000",
    "total_steps=15000",
    "eval.every_steps=1000",
    "model.policy.actor_hidden=[64,64]",
    "model.policy.critic_hidden=[64,64]",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["td3_pendulum", "ddpg_pendulum"])
def test_td3_and_ddpg_learn_pendulum(name: str, tmp_path: Path) -> None:
    """The RL Zoo settings with a shorter random warm-up and smaller nets (faster)."""
    cfg = load_config([f"experiment={name}", *FAST_PENDULUM, *QUIET, f"run_dir={tmp_path}"])
    result = train(cfg)
    assert result.final_eval is not None and result.final_eval["mean_return"] >= -250
