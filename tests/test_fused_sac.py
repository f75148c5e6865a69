"""SAC's hand-written step (reprl.agents.fused_sac) against autograd: the same losses,
statistics and gradients of every parameter, for each loss alone and for their sum, across
the options that keep it; other models keep autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprl.agents import fused_sac
from reprl.config import load_config
from reprl.data.replay import ReplayBuffer
from reprl.envs import make_env_spec
from reprl.errors import ConfigError
from reprl.models import native
from reprl.train import make_agent


def sac(extra: list[str]) -> object:
    cfg = load_config(["experiment=sac_pendulum", "agent.batch_size=32", *extra])
    torch.manual_seed(0)
    return make_agent(cfg, make_env_spec(cfg.env), torch.device("cpu"))


def windows(agent, n_step: int = 1) -> object:
    """Windows sampled from a buffer of random Pendulum-shaped steps with episode ends."""
    buffer = ReplayBuffer.from_spec(agent.spec, 1, 128)
    rng = np.random.default_rng(0)
    for t in range(100):
        buffer.add(
            rng.normal(size=(1, 3)).astype(np.float32),
            rng.uniform(-2, 2, size=(1, 1)),
            rng.normal(size=1),
            np.array([t % 37 == 36]),
            np.array([t % 50 == 49]),
            np.ones(1, bool),
        )
    return buffer.sample(32, np.random.default_rng(1), n_step=n_step)


def perturb_target(agent) -> None:
    """A target that differs from the online nets (a fresh agent's is a copy)."""
    with torch.no_grad():
        for p in agent.target.target.parameters():
            p.add_(0.05 * torch.randn_like(p))


def losses_and_grads(agent, mb, fused: bool, keep: str | None):
    fused_sac.FUSED_SAC = fused
    try:
        torch.manual_seed(7)
        losses, info = agent.compute_loss(mb)
    finally:
        fused_sac.FUSED_SAC = True
    agent.optimizer.zero_grad()
    params = agent.optimizer.params
    total = sum(v for k, v in losses.items() if keep is None or k == keep)
    total.backward()
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    return {k: v.detach() for k, v in losses.items()}, info, grads


@pytest.mark.parametrize(
    "extra, n_step",
    [
        ([], 1),
        (["agent.autotune=false", "agent.alpha=0.2"], 1),
        ([], 3),
        (["model.backbone.hidden_sizes=[32]"], 1),  # features with a graph (a backbone)
        (["model.backbone.hidden_sizes=[6]"], 1),  # ... narrow enough for the C kernels
        (
            [
                "model.policy.actor_hidden=[24,24,24]",
                "model.policy.critic_hidden=[16,16,16]",
                "model.policy.num_critics=3",
                "model.policy.log_std_max=-0.5",  # the log-std clamp binds on some entries
            ],
            1,
        ),
    ],
    ids=[
        "sac_pendulum",
        "fixed-alpha",
        "nstep",
        "backbone",
        "narrow-backbone",
        "deep-3-critics-clamped",
    ],
)
@pytest.mark.parametrize("keep", [None, "loss_rl_critic", "loss_rl_actor", "loss_rl_alpha"])
def test_fused_step_equals_autograd(extra: list[str], n_step: int, keep: str | None) -> None:
    agent = sac([f"agent.n_step={n_step}", *extra])
    assert agent.fused_nets is not None
    perturb_target(agent)
    mb = windows(agent, n_step)
    fused_losses, fused_info, fused_grads = (None, None, None)
    ref = losses_and_grads(agent, mb, False, None)
    if keep is not None and keep not in ref[0]:
        pytest.skip(f"no {keep} with these options")
    fused_losses, fused_info, fused_grads = losses_and_grads(agent, mb, True, keep)
    ref_losses, ref_info, ref_grads = losses_and_grads(agent, mb, False, keep)
    assert set(fused_losses) == set(ref_losses)
    for k in ref_losses:
        torch.testing.assert_close(fused_losses[k], ref_losses[k], rtol=1e-5, atol=1e-6)
    assert set(fused_info) == set(ref_info)
    for k in ref_info:
        torch.testing.assert_close(
            torch.as_tensor(fused_info[k]).float(), torch.as_tensor(ref_info[k]).float()
        )
    assert len(fused_grads) == len(ref_grads)
    for i, (a, b) in enumerate(zip(fused_grads, ref_grads, strict=True)):
        assert (a is None) == (b is None), f"parameter {i}: gradient on one side only"
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=f"parameter {i}")


def test_critic_only_steps_between_actor_steps() -> None:
    """policy_delay 2: the first step has the critic loss only, the second all three."""
    agent = sac(["agent.policy_delay=2"])
    mb = windows(agent)
    for expected in (
        {"loss_rl_critic"},
        {"loss_rl_critic", "loss_rl_actor", "loss_rl_alpha"},
    ):
        fused, _, fused_grads = losses_and_grads(agent, mb, True, None)
        ref, _, ref_grads = losses_and_grads(agent, mb, False, None)
        assert set(fused) == set(ref) == expected
        for a, b in zip(fused_grads, ref_grads, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        agent.gradient_steps_done += 1


@pytest.mark.parametrize(
    "extra",
    [["agent.autocast=bf16"], ["model.policy.activation=tanh"], ["model/neck=lstm"]],
    ids=["bf16", "tanh", "recurrent"],
)
def test_other_models_keep_autograd(extra: list[str]) -> None:
    assert sac(extra).fused_nets is None
    with pytest.raises(ConfigError, match="agent.parallel_actor: needs SAC's hand-written"):
        sac([*extra, "agent.parallel_actor=true"])


@pytest.mark.parametrize(
    "extra, assigned",
    [([], True), (["model.backbone.hidden_sizes=[32]"], False)],
    ids=["direct", "backbone-needs-backward"],
)
def test_update_writes_the_given_gradients_directly(extra: list[str], assigned: bool) -> None:
    """given_grads.assign (what update() tries first) leaves the gradients a backward of the
    summed losses gives; with features that have a graph it declines (backward then), and a
    second hand-out fails as a second backward does."""
    from reprl.agents import given_grads

    agent = sac(extra)
    mb = windows(agent)
    ref = losses_and_grads(agent, mb, True, None)[2]
    torch.manual_seed(7)
    losses, _ = agent.compute_loss(mb)
    agent.optimizer.zero_grad()
    assert given_grads.assign(list(losses.values())) is assigned
    if not assigned:
        return
    for p, g in zip(agent.optimizer.params, ref, strict=True):
        assert (p.grad is None) == (g is None)
        if g is not None:
            torch.testing.assert_close(p.grad, g)
    with pytest.raises(RuntimeError, match="handed out"):
        losses["loss_rl_critic"].backward()


def test_kept_views_follow_updates_and_loads() -> None:
    """Nets keeps its layers' views across steps: after optimizer steps, Polyak updates and a
    load_state_dict from another agent, the fused step still equals autograd."""
    agent = sac([])
    mb = windows(agent)
    for _ in range(3):
        torch.manual_seed(3)
        losses, info = agent.compute_loss(mb)
        info |= agent.update(losses)
        agent.after_update(mb, info)
    other = sac(["seed=5"])
    perturb_target(other)
    agent.load_state_dict(other.state_dict())
    nets, target = agent.fused_nets
    assert torch.equal(nets.critic_layers[1][1][0], other.fused_nets[0].critic_w[1][1])
    assert torch.equal(target.critic_layers[0][0][1], other.fused_nets[1].critic_b[0][0, 0])
    fused = losses_and_grads(agent, mb, True, None)
    ref = losses_and_grads(agent, mb, False, None)
    for k in ref[0]:
        torch.testing.assert_close(fused[0][k], ref[0][k], rtol=1e-5, atol=1e-6)
    for a, b in zip(fused[2], ref[2], strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "extra",
    [[], ["model.backbone.hidden_sizes=[32]"], ["agent.policy_delay=2"]],
    ids=["sac_pendulum", "backbone", "critic-only-step"],
)
def test_parallel_actor_equals_one_thread(extra: list[str], monkeypatch) -> None:
    """agent.parallel_actor: the actor's part runs on the second thread, and the losses,
    statistics and every gradient are those of the one-thread step, bit for bit."""
    import threading

    ran_on: list[str] = []
    actor_part = fused_sac._actor_part

    def recording(*args):
        ran_on.append(threading.current_thread().name)
        return actor_part(*args)

    monkeypatch.setattr(fused_sac, "_actor_part", recording)
    results = []
    for parallel in (False, True):
        agent = sac([f"agent.parallel_actor={str(parallel).lower()}", *extra])
        perturb_target(agent)
        results.append(losses_and_grads(agent, windows(agent), True, None))
    (one, one_info, one_grads), (two, two_info, two_grads) = results
    actor_steps = "agent.policy_delay=2" not in extra
    assert ran_on == (["MainThread", "reprl-sac_0"] if actor_steps else [])
    assert set(one) == set(two) and set(one_info) == set(two_info)
    for k in one:
        assert torch.equal(one[k], two[k]), k
    for k in one_info:
        assert torch.equal(torch.as_tensor(one_info[k]), torch.as_tensor(two_info[k])), k
    for a, b in zip(one_grads, two_grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)


def test_parallel_actor_error_reaches_the_caller(monkeypatch) -> None:
    """An error in the second thread's part is raised by compute_loss, and the next step
    runs normally."""
    agent = sac(["agent.parallel_actor=true"])
    mb = windows(agent)

    def broken(*args):
        raise ValueError("actor part failed")

    with monkeypatch.context() as m:
        m.setattr(fused_sac, "_actor_part", broken)
        with pytest.raises(ValueError, match="actor part failed"):
            agent.compute_loss(mb)
    losses, _ = agent.compute_loss(mb)
    assert set(losses) == {"loss_rl_critic", "loss_rl_actor", "loss_rl_alpha"}


@pytest.mark.parametrize(
    "extra",
    [[], ["model.backbone.hidden_sizes=[32]"], ["model.backbone.hidden_sizes=[6]"]],
    ids=["plain", "backbone", "narrow-backbone"],
)
@pytest.mark.parametrize("kernels_on", [False, True])
def test_acting_from_kept_views_equals_the_policy(
    extra: list[str], kernels_on: bool, monkeypatch
) -> None:
    """SAC acts from the actor's kept views (fused_sac.act): the policy's sampled and
    deterministic actions bit for bit, with the same noise drawn, also after an update; by
    the C kernels where the actor fits them, the same to float32 rounding."""
    monkeypatch.setattr(native, "ENABLED", kernels_on)
    agent = sac(extra)
    in_c = kernels_on and agent.fused_nets[0].actor_mlp is not None and native.available()
    if native.has_sgemm():  # a 32-wide input is not narrow: the kept views then
        assert in_c == (kernels_on and extra != ["model.backbone.hidden_sizes=[32]"])
    agent.env_steps_seen = agent.cfg.learning_starts  # past the random warm-up
    obs = torch.randn(3, 1, 3)
    is_first = torch.zeros(3, 1, dtype=torch.bool)
    mb = windows(agent)
    for _ in range(2):
        for deterministic in (False, True):
            actions = []
            for nets in (agent.fused_nets, None):
                kept, agent.fused_nets = agent.fused_nets, nets
                try:
                    torch.manual_seed(7)
                    actions.append(agent.act(obs, None, is_first, deterministic)[0])
                    actions.append(torch.randn(2))  # the generator is where the policy leaves it
                finally:
                    agent.fused_nets = kept
            assert actions[0].shape == (3, 1, 1)
            assert torch.equal(actions[1], actions[3])  # the same noise drawn
            if in_c:
                torch.testing.assert_close(actions[0], actions[2], rtol=1e-5, atol=1e-6)
            else:
                assert torch.equal(actions[0], actions[2])
        losses, info = agent.compute_loss(mb)
        info |= agent.update(losses)
        agent.after_update(mb, info)
