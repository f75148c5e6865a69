"""DQN's hand-written TD step (reprl.agents.fused_td) against autograd: the same loss, Q(s, a),
parameter and input gradients for every head it takes, and the DQN agent's loss, priorities
and gradients equal with it on and off for each switch that keeps it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reprl.agents import fused_td
from reprl.config import load_config
from reprl.envs import make_vector_env
from reprl.models import kernels
from reprl.train import make_agent

SMALL = [
    "experiment=dqn_cartpole",
    "env.num_envs=2",
    "agent.train_freq=16",
    "agent.learning_starts=64",
    "agent.buffer_size=1000",
    "logger.progress=false",
]


def reference(x, weights, biases, action, target, is_weight, huber):
    """The TD loss through autograd: F.linear/ReLU layers, gather, smooth L1 / MSE."""
    h = x
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        h = F.linear(h, w, b)
        if i < len(weights) - 1:
            h = torch.relu(h)
    q_sa = h.gather(1, action.long()[:, None])[:, 0]
    if is_weight is None:
        loss = F.smooth_l1_loss(q_sa, target) if huber else F.mse_loss(q_sa, target)
    else:
        per = F.smooth_l1_loss(q_sa, target, reduction="none") if huber else (q_sa - target) ** 2
        loss = (is_weight * per).mean()
    return loss, q_sa


def mlp_params(sizes: list[int], generator: torch.Generator) -> tuple[list, list]:
    weights = [
        (torch.randn(o, i, generator=generator) / i**0.5).requires_grad_()
        for i, o in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [(0.1 * torch.randn(o, generator=generator)).requires_grad_() for o in sizes[1:]]
    return weights, biases


@pytest.mark.parametrize("sizes", [[4, 2], [4, 32, 3], [4, 256, 256, 2], [8, 64, 64, 64, 5]])
@pytest.mark.parametrize("huber", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("matmul", ["default", "onednn"])
def test_td_loss_and_gradients_match_autograd(
    sizes: list[int], huber: bool, weighted: bool, matmul: str
) -> None:
    if matmul == "onednn" and not kernels.onednn_available():
        pytest.skip("no oneDNN in this PyTorch build")
    before = kernels.cpu_matmul_enabled()
    kernels.set_cpu_matmul(matmul)
    try:
        g = torch.Generator().manual_seed(sum(sizes))
        rows = 64
        weights, biases = mlp_params(sizes, g)
        x = torch.randn(rows, sizes[0], generator=g).requires_grad_()
        action = torch.randint(0, sizes[-1], (rows,), generator=g)
        # Targets far from and close to Q: both sides of the Huber kink
        target = 3.0 * torch.randn(rows, generator=g)
        is_weight = torch.rand(rows, generator=g) if weighted else None
        loss_ref, q_ref = reference(x, weights, biases, action, target, is_weight, huber)
        params = [*weights, *biases, x]
        grads_ref = torch.autograd.grad(loss_ref, params)
        loss, q_sa = fused_td.td_loss_node(x, weights, biases, action, target, is_weight, huber)
        grads = torch.autograd.grad(loss, params)
        torch.testing.assert_close(loss, loss_ref)
        torch.testing.assert_close(q_sa, q_ref.detach())
        for a, b in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    finally:
        kernels.set_cpu_matmul("onednn" if before else "default")


def test_loss_node_scales_by_the_incoming_gradient_and_backs_up_once() -> None:
    g = torch.Generator().manual_seed(0)
    weights, biases = mlp_params([4, 16, 2], g)
    x, action, target = torch.randn(8, 4, generator=g), torch.zeros(8), torch.ones(8)
    loss, _ = fused_td.td_loss_node(x, weights, biases, action, target)
    (3.0 * loss).backward(retain_graph=True)
    ref, _ = reference(x, weights, biases, action, target, None, True)
    expected = torch.autograd.grad(3.0 * ref, weights[0])[0]
    torch.testing.assert_close(weights[0].grad, expected)
    with pytest.raises(RuntimeError, match="handed out"):
        loss.backward()
    with torch.no_grad():  # no graph without grad mode
        plain, _ = fused_td.td_loss_node(x, weights, biases, action, target)
    assert plain.grad_fn is None


def agent_and_windows(extra: list[str], n_step: int = 1):
    cfg = load_config([*SMALL, f"agent.n_step={n_step}", *extra])
    envs = make_vector_env(cfg.env, seed=0)
    torch.manual_seed(0)
    agent = make_agent(cfg, envs.spec, torch.device("cpu"))
    source = agent.make_source(envs, 0, torch.device("cpu"))
    for _ in range(8):
        source.next(agent)
    agent.target.target.load_state_dict(  # a target that differs from the online net
        {k: v + 0.05 for k, v in agent.model.state_dict().items()}
    )
    return agent, source.buffer.sample(32, np.random.default_rng(0), n_step=n_step, beta=0.5)


@pytest.mark.parametrize(
    "extra, n_step",
    [
        ([], 1),
        (["agent.double=true"], 1),
        ([], 3),
        (["agent.double=true", "agent.prioritized=true"], 3),
        (["agent.huber=false", "agent.target_update_unit=gradient_steps"], 1),
        (["model.backbone.hidden_sizes=[32]"], 1),  # a backbone with parameters
        (["model.policy.hidden=[]"], 1),  # a linear Q head on the features
    ],
    ids=["plain", "double", "nstep", "double-per-nstep", "mse", "backbone", "linear"],
)
def test_dqn_agent_equal_with_and_without_the_fused_step(extra: list[str], n_step: int) -> None:
    agent, windows = agent_and_windows(extra, n_step)
    assert agent.td_layers is not None
    results = []
    for fused in (True, False):
        fused_td.FUSED_TD = fused
        try:
            losses, info = agent.compute_loss(windows)
        finally:
            fused_td.FUSED_TD = True
        agent.model.zero_grad()
        losses["loss_rl_q"].backward()
        grads = [p.grad.clone() for p in agent.model.parameters() if p.requires_grad]
        results.append((losses["loss_rl_q"].detach(), agent._priority, info, grads))
    (loss_a, prio_a, info_a, grads_a), (loss_b, prio_b, info_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(prio_a, prio_b)
    torch.testing.assert_close(info_a["stats/q"], info_b["stats/q"])
    assert len(grads_a) == len(grads_b) > 0
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "extra",
    [
        ["model.policy.dueling=true"],
        ["model.policy.num_atoms=51"],
        ["model.policy.noisy=true"],
        ["agent.autocast=bf16"],
        ["model/neck=lstm"],
    ],
    ids=["dueling", "c51", "noisy", "bf16", "recurrent"],
)
def test_other_heads_keep_autograd(extra: list[str]) -> None:
    agent, _ = agent_and_windows(extra)
    assert agent.td_layers is None
    assert agent.act_layers is None and agent.target_layers is None


@pytest.mark.parametrize(
    "extra",
    [[], ["model.backbone.hidden_sizes=[32]"], ["model.policy.hidden=[]"]],
    ids=["plain", "backbone", "linear"],
)
def test_acting_and_target_values_equal_the_modules(extra: list[str]) -> None:
    """Acting (``DQN.act_layers``) and the targets (``DQN.target_layers``) run the plain head
    from kept views: the policy modules' Q-values bit for bit, also after the parameters
    change in place (an optimizer step, a target sync); by the C kernels where the head fits
    them (``DQN._lean_q``), the same to float32 rounding."""
    agent, windows = agent_and_windows(extra)
    assert agent.act_layers is not None and agent.target_layers is not None
    obs = windows.obs[:, :1]
    nets = ((agent.model, agent.act_layers), (agent.target.target, agent.target_layers))
    with torch.no_grad():
        for _ in range(2):
            for target, (net, layers) in enumerate(nets):
                features, _ = net.act_features(obs)
                x = features.reshape(obs.shape[0], -1)
                modules = net.policy.q_values(features)[:, 0]
                assert torch.equal(kernels.chain(x, layers), modules)
                torch.testing.assert_close(agent._lean_q(x, bool(target)), modules)
            is_first = torch.zeros(obs.shape[:2], dtype=torch.bool)
            action, _, _ = agent.act(obs, None, is_first, deterministic=True)
            layers, agent.act_layers = agent.act_layers, None
            try:
                assert torch.equal(action, agent.act(obs, None, is_first, deterministic=True)[0])
            finally:
                agent.act_layers = layers
            for p in agent.model.parameters():  # in place, as optimizer steps and syncs
                p.add_(torch.randn_like(p) * 0.1)
            agent.target.sync()


def test_phase_targets_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare_phase`` computes a phase's targets ``PHASE_TARGET_ROWS`` rows at a time (the
    last chunk shorter): the values of one call over all rows."""
    from reprl.agents import dqn

    agent, windows = agent_and_windows([])
    assert agent.phase_target()
    whole = agent.td_target(windows)
    monkeypatch.setattr(dqn, "PHASE_TARGET_ROWS", 20)
    chunked = agent.prepare_phase(windows.index(slice(None))).extras["target_q"][:, 0]
    assert chunked.shape == whole.shape and windows.reward.shape[0] % 20 != 0
    torch.testing.assert_close(chunked, whole)
