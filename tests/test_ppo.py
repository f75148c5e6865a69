"""PPO's loss against a hand-written reference; options (value clipping, Huber, target KL)
change what they should; gradients reach only what they should."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reprl.config import load_config
from reprl.envs import make_env_spec
from reprl.registry import AGENTS
from reprl.schema import component_config
from reprl.train import make_agent
from reprl.types import Batch


def make(overrides: list[str]):
    cfg = load_config(["experiment=ppo_cartpole", *overrides])
    agent = make_agent(cfg, make_env_spec(cfg.env), torch.device("cpu"))
    agent.on_iteration_start(0.0)
    return agent


def fake_minibatch(agent, b: int = 64, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(b, 1, 4, generator=g)
    action = torch.randint(0, 2, (b, 1), generator=g)
    with torch.no_grad():
        (out, _), _ = agent.model(obs)
        old_logp = out.dist.log_prob(action) + 0.3 * torch.randn(b, 1, generator=g)
        old_value = out.value[..., 0] + torch.randn(b, 1, generator=g)
    valid = torch.rand(b, 1, generator=g) > 0.1
    flags = torch.zeros(b, 1, dtype=torch.bool)
    return Batch(
        obs=obs,
        action=action,
        reward=torch.zeros(b, 1),
        terminated=flags,
        truncated=flags,
        is_first=flags,
        valid=valid,
        extras={
            "log_prob": old_logp,
            "value": old_value,
            "advantage": torch.randn(b, 1, generator=g),
            "returns": torch.randn(b, 1, generator=g),
        },
    )


def reference_losses(agent, mb: Batch, clip: float, vclip: bool, ent_coef: float, vf_coef: float):
    (out, _), _ = agent.model(mb.obs)
    m = mb.valid
    logp, ent, v = out.dist.log_prob(mb.action)[m], out.dist.entropy()[m], out.value[..., 0][m]
    adv = mb.extras["advantage"][m]
    adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
    ratio = (logp - mb.extras["log_prob"][m]).exp()
    pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
    ret, old_v = mb.extras["returns"][m], mb.extras["value"][m]
    vl = (v - ret) ** 2
    if vclip:
        vl = torch.max(vl, (old_v + (v - old_v).clamp(-clip, clip) - ret) ** 2)
    return pg, vf_coef * vl.mean(), -ent_coef * ent.mean()


@pytest.mark.parametrize("vclip", [False, True])
def test_loss_matches_reference(vclip: bool) -> None:
    agent = make(
        [f"agent.clip_vloss={str(vclip).lower()}", "agent.ent_coef=0.01", "agent.clip_coef=0.2"]
    )
    mb = fake_minibatch(agent)
    losses, info = agent.compute_loss(mb)
    pg, vl, ent = reference_losses(agent, mb, 0.2, vclip, 0.01, agent.cfg.vf_coef)
    torch.testing.assert_close(losses["loss_rl_policy"], pg)
    torch.testing.assert_close(losses["loss_rl_value"], vl)
    torch.testing.assert_close(losses["loss_rl_entropy"], ent)
    assert 0 <= info["stats/clipfrac"] <= 1 and info["stats/approx_kl"] >= 0


def test_huber_value_loss_is_smaller_for_large_errors() -> None:
    mse = make([]).compute_loss(fake_minibatch(make([])))[0]["loss_rl_value"]
    agent = make(["agent.huber_value_loss=true"])
    huber = agent.compute_loss(fake_minibatch(agent))[0]["loss_rl_value"]
    assert huber < mse


def test_target_kl_stops_the_epochs(tmp_path) -> None:
    from reprl.runs.logger import read_metrics
    from reprl.train import train

    run = tmp_path / "kl"
    train(
        load_config(
            [
                "experiment=ppo_cartpole",
                "total_steps=1024",
                "agent.target_kl=1e-9",
                "eval.every_steps=0",
                "eval.at_end=false",
                "logger.progress=false",
                "logger.tensorboard=false",
                f"run_dir={run}",
            ]
        )
    )
    updates = [r["perf/updates"] for r in read_metrics(run / "metrics.jsonl")]
    assert updates and max(updates) < 20  # 20 epochs x 1 minibatch without the early stop


def test_value_loss_never_moves_a_separate_actor() -> None:
    # SB3-style separate actor and critic networks: a step on the value loss alone leaves the
    # policy unchanged, and a step on the policy loss leaves the values unchanged.
    agent = make([])
    mb = fake_minibatch(agent)
    with torch.no_grad():
        (before, _), _ = agent.model(mb.obs)
    for name, other in (("loss_rl_value", "logits"), ("loss_rl_policy", "value")):
        agent.model.zero_grad()
        agent.compute_loss(mb)[0][name].backward()
        with torch.no_grad():
            for p in agent.model.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
            (after, _), _ = agent.model(mb.obs)
        if other == "logits":
            torch.testing.assert_close(after.dist.logits, before.dist.logits)
            assert not torch.allclose(after.value, before.value)
        else:
            torch.testing.assert_close(after.value, before.value)
            assert not torch.allclose(after.dist.logits, before.dist.logits)
        before = after


def test_inconsistent_agent_options_fail_at_load() -> None:
    from reprl.errors import ConfigError

    with pytest.raises(ConfigError, match="agent.autocast"):
        component_config(AGENTS, {"name": "ppo", "autocast": "fp8"}, "agent")
    with pytest.raises(ConfigError, match="agent.num_epochs"):
        component_config(AGENTS, {"name": "ppo", "num_epochs": 0}, "agent")
    assert dataclasses.is_dataclass(component_config(AGENTS, {"name": "a2c"}, "agent")[1])
