"""Noisy nets (Fortunato et al. 2018): NoisyLinear statistics, modes and init; the q policy's
noisy head; DQN with the full Rainbow head end to end."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from reprl.config import load_config
from reprl.models.layers import orthogonal_init_
from reprl.models.qpolicy import NoisyLinear, QConfig, QPolicy
from reprl.train import train
from reprl.types import EnvSpec


def test_noisy_mean_output_matches_mean_weights() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(8, 4, sigma0=0.5)
    x = torch.randn(16, 8)
    with torch.no_grad():
        mean_out = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
        samples = []
        for _ in range(4000):
            layer.reset_noise()
            samples.append(layer(x))
        avg = torch.stack(samples).mean(0)
    # per-sample noise std is O(sigma * |x|) ~ 0.5-1; 4000 samples: error ~ 0.02
    assert torch.allclose(avg, mean_out, atol=0.08)
    assert (torch.stack(samples).std(0) > 0.05).all()


def test_eval_and_disabled_noise_are_deterministic_and_use_mean_weights() -> None:
    layer = NoisyLinear(5, 3)
    x = torch.randn(7, 5)
    mean_out = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    layer.eval()
    a = layer(x)
    layer.reset_noise()
    assert torch.equal(a, layer(x)) and torch.allclose(a, mean_out)
    layer.train()
    layer.noise_enabled = False
    layer.reset_noise()
    assert torch.allclose(layer(x), mean_out)
    layer.noise_enabled = True
    layer.eval()
    layer.noise_in_eval = True  # what DQN does for its (eval-mode) target network
    assert not torch.allclose(layer(x), mean_out)


def test_reset_noise_changes_train_outputs_only() -> None:
    layer = NoisyLinear(6, 2)
    x = torch.randn(3, 6)
    a = layer(x)
    assert torch.equal(a, layer(x))  # same noise until reset
    layer.reset_noise()
    assert not torch.allclose(a, layer(x))


def test_noisy_init_and_parameters() -> None:
    in_f, out_f, sigma0 = 64, 10, 0.5
    layer = NoisyLinear(in_f, out_f, sigma0)
    names = {n: p.shape for n, p in layer.named_parameters()}
    assert names == {
        "weight_mu": (out_f, in_f),
        "weight_sigma": (out_f, in_f),
        "bias_mu": (out_f,),
        "bias_sigma": (out_f,),
    }
    assert sum(p.numel() for p in layer.parameters()) == 2 * (in_f * out_f + out_f)
    bound = 1 / math.sqrt(in_f)
    assert layer.weight_mu.abs().max() <= bound and layer.bias_mu.abs().max() <= bound
    assert layer.weight_mu.abs().max() > 0.8 * bound  # uniform over the range, not tiny
    assert torch.allclose(layer.weight_sigma, torch.full_like(layer.weight_sigma, 0.5 / 8))
    assert torch.allclose(layer.bias_sigma, torch.full_like(layer.bias_sigma, 0.5 / 8))
    # factorised noise: f(x) = sign(x) sqrt(|x|), only in + out noise values held
    assert layer.eps_in.shape == (in_f,) and layer.eps_out.shape == (out_f,)
    assert "eps_in" not in layer.state_dict()


def _spec() -> EnvSpec:
    from reprl.envs import make_env_spec

    return make_env_spec(load_config(["env=cartpole"]).env)


def _policy(**kw: object) -> QPolicy:
    return QPolicy(QConfig(**kw), 8, _spec())


def test_q_policy_noisy_head_and_orthogonal_init_skips_it() -> None:
    torch.manual_seed(0)
    policy = _policy(hidden=[16], dueling=True, num_atoms=5, noisy=True, noisy_std=0.1)
    layers = policy.noisy_layers()
    assert len(layers) == 4  # hidden + output, both dueling streams
    assert not any(isinstance(m, nn.Linear) for m in policy.modules())
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    orthogonal_init_(policy)
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())
    assert torch.allclose(layers[0].weight_sigma, torch.full((16, 8), 0.1 / math.sqrt(8)))
    x = torch.randn(2, 3, 8)
    out, _ = policy(x)
    assert out.q.shape == (2, 3, 2) and out.logits.shape == (2, 3, 2, 5)
    policy.reset_noise()
    assert not torch.allclose(policy(x)[0].q, out.q)
    policy.eval()
    q = policy(x)[0].q
    policy.reset_noise()
    assert torch.equal(policy(x)[0].q, q)
    plain = _policy(hidden=[16])
    assert plain.noisy_layers() == [] and not plain.noisy
    plain.reset_noise()  # no-op


def test_dqn_rainbow_head_runs_on_cartpole(tmp_path: Path) -> None:
    cfg = load_config(
        [
            "experiment=dqn_cartpole",
            "model/policy=rainbow",
            "agent.double=true",
            "agent.n_step=3",
            "agent.prioritized=true",
            "agent.per_alpha=0.5",
            "env.num_envs=2",
            "total_steps=320",
            "agent.train_freq=16",
            "agent.gradient_steps=4",
            "agent.learning_starts=64",
            "agent.batch_size=16",
            "agent.buffer_size=1000",
            "eval.episodes=2",
            "eval.every_steps=0",
            "model.policy.hidden=[32]",
            "logger.progress=false",
            "logger.tensorboard=false",
            f"run_dir={tmp_path}",
        ]
    )
    assert cfg.model.policy["noisy"] and cfg.model.policy["num_atoms"] == 51
    result = train(cfg)
    assert result.global_step == 320
    records = (tmp_path / "metrics.jsonl").read_text()
    assert "losses/rl_q" in records


def test_noisy_dqn_acts_greedily_with_fresh_noise() -> None:
    from reprl.agents.dqn import DQN, DQNConfig
    from reprl.models.build import build_model

    cfg = load_config(["experiment=dqn_cartpole", "model/policy=rainbow"])
    spec = _spec()
    model = build_model(cfg.model, spec)
    agent = DQN(DQNConfig(), spec, model, torch.device("cpu"))
    assert agent.noisy and agent.epsilon == 0.0
    agent.on_iteration_start(0.0)
    assert agent.epsilon == 0.0
    assert agent.target.target.policy.noisy_layers()[0].noise_in_eval
    obs = torch.randn(64, 1, 4)
    first = torch.ones(64, 1, dtype=torch.bool)
    a1 = agent.act(obs, None, first, deterministic=True)[0]
    a2 = agent.act(obs, None, first, deterministic=True)[0]
    assert torch.equal(a1, a2)
    eps = model.policy.noisy_layers()[0].eps_in.clone()
    agent.act(obs, None, first)
    assert not torch.equal(eps, model.policy.noisy_layers()[0].eps_in)
