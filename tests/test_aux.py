"""Auxiliaries on the shared backbone: modified RND (embedding inputs, detached, slow copies),
BYOL and Barlow Twins as agent losses (EMA target, which parameters each loss reaches), the
loss coefficients, and gradient projection wired into the agent's update."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from reprl.config import load_config
from reprl.envs import make_env_spec
from reprl.optim.gradproj import project_conflicting
from reprl.runs import checkpoint as ckpt
from reprl.train import make_agent, train
from reprl.types import Batch

pytestmark = pytest.mark.atari

ATARI = [
    "experiment=ppo_atari",
    "env.num_envs=2",
    "model.backbone.features_dim=32",
    "model.policy.num_values=2",
]
SMALL_BYOL = [
    "aux.byol.hidden_sizes=[32]",
    "aux.byol.predictor_hidden_sizes=[32]",
    "aux.byol.projection_dim=16",
]
QUIET = ["logger.progress=false", "logger.tensorboard=false", "logger.log_every_steps=0"]


def make(overrides: list[str]):
    cfg = load_config([*ATARI, *overrides])
    agent = make_agent(cfg, make_env_spec(cfg.env), torch.device("cpu"))
    agent.on_iteration_start(0.0)
    return agent


def minibatch(agent, n: int = 6, t: int = 2, seed: int = 0) -> Batch:
    """Random frames with behaviour extras from the agent itself (both value heads)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 255, (n, t, 4, 84, 84), generator=g, dtype=torch.uint8)
    action = torch.randint(0, agent.spec.num_actions, (n, t), generator=g)
    with torch.no_grad():
        (out, _), _ = agent.model(obs)
    flags = torch.zeros(n, t, dtype=torch.bool)
    extras = {
        "log_prob": out.dist.log_prob(action) + 0.1 * torch.randn(n, t, generator=g),
        "value": out.value[..., 0],
        "advantage": torch.randn(n, t, generator=g),
        "returns": torch.randn(n, t, generator=g),
    }
    if out.value.shape[-1] > 1:
        extras |= {"value_int": out.value[..., 1], "returns_int": torch.randn(n, t, generator=g)}
    return Batch(
        obs=obs,
        action=action,
        reward=torch.zeros(n, t),
        terminated=flags,
        truncated=flags,
        is_first=flags,
        valid=torch.ones(n, t, dtype=torch.bool),
        extras=extras,
    )


def backbone_grads(agent, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [p for p in agent.model.backbone.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def total_abs(grads: list[torch.Tensor]) -> float:
    return float(sum(g.abs().sum() for g in grads))


# ----------------------------------------------------------------------------- modified RND
def test_modified_rnd_reads_the_detached_backbone_embedding() -> None:
    agent = make(["aux.rnd.input=embedding", "aux.rnd.obs_norm_init_steps=0"])
    aux = agent.auxiliaries["rnd"]
    assert aux.rnd.input_shape == (32,)  # the backbone's embedding size, not the frame's
    assert not aux.rnd.image
    mb = minibatch(agent)
    with torch.no_grad():
        embedding, _ = agent.model.backbone(mb.obs)
    torch.testing.assert_close(aux.inputs(mb.obs), embedding)
    losses, _ = aux.compute_loss(mb, agent)
    loss = losses["loss_rnd_predictor"]
    assert loss.item() > 0
    assert total_abs(backbone_grads(agent, loss)) == 0.0  # never trains the backbone
    grads = torch.autograd.grad(loss, list(aux.rnd.predictor.parameters()))
    assert total_abs(list(grads)) > 0


@pytest.mark.parametrize("mode", ["periodic", "polyak"])
def test_slow_backbone_copy_follows_the_online_backbone(mode: str) -> None:
    agent = make(
        [
            "aux.rnd.input=embedding",
            f"aux.rnd.slow_backbone={mode}",
            "aux.rnd.slow_period=3",
            "aux.rnd.slow_tau=0.25",
        ]
    )
    aux = agent.auxiliaries["rnd"]
    online = list(agent.model.backbone.parameters())
    slow = list(aux.slow_backbone.parameters())
    assert all(torch.equal(o, s) and not s.requires_grad for o, s in zip(online, slow))
    assert not any(p is s for p in aux.parameters() if p.requires_grad for s in slow)
    with torch.no_grad():
        for p in online:
            p.add_(1.0)
    before = [s.detach().clone() for s in slow]
    aux.after_update()
    if mode == "polyak":  # slow <- slow + tau (online - slow) after every update
        for o, s, b in zip(online, slow, before):
            torch.testing.assert_close(s, b + 0.25 * (o - b))
    else:  # hard copies on the grid of every 3rd update
        assert all(torch.equal(s, b) for s, b in zip(slow, before))
        aux.after_update()
        aux.after_update()
        assert all(torch.equal(s, o) for s, o in zip(slow, online))
    mb = minibatch(agent)
    with torch.no_grad():
        slow_embedding, _ = aux.slow_backbone(mb.obs)
    torch.testing.assert_close(aux.inputs(mb.obs), slow_embedding)


# ----------------------------------------------------------------------------- SSL
def test_byol_auxiliary_trains_backbone_and_heads_and_moves_its_ema_target() -> None:
    agent = make(["aux={}", "model.policy.num_values=1", "aux.byol.momentum=0.9", *SMALL_BYOL])
    aux = agent.auxiliaries["byol"]
    mb = minibatch(agent)
    losses, info = agent.compute_loss(mb)
    assert set(losses) == {"loss_rl_policy", "loss_rl_value", "loss_rl_entropy", "loss_ssl_byol"}
    byol = losses["loss_ssl_byol"]
    assert 0.0 < byol.item() <= 4.0 and "stats/byol_loss" in info
    assert total_abs(backbone_grads(agent, byol)) > 0
    head_grads = torch.autograd.grad(byol, list(aux.head.parameters()), retain_graph=True)
    assert total_abs(list(head_grads)) > 0
    assert all(not p.requires_grad for p in aux.target_encoder.parameters())
    # the aux optimizer holds the heads, never the agent's backbone or the frozen target
    aux_params = {id(p) for p in agent.aux_optimizer.params}
    assert {id(p) for p in aux.head.parameters()} <= aux_params
    assert not aux_params & {id(p) for p in agent.model.parameters()}
    target_before = [p.detach().clone() for p in aux.target_encoder.parameters()]
    agent.update(losses)  # one optimiser step, then the EMA step
    online = [*agent.model.backbone.parameters(), *aux.head.projector.parameters()]
    for o, t, b in zip(online, aux.target_encoder.parameters(), target_before):
        torch.testing.assert_close(t, b + 0.1 * (o.detach() - b))
    assert aux.updates == 1


def test_ssl_backbone_grad_false_keeps_the_ssl_gradient_out_of_the_backbone() -> None:
    agent = make(
        ["aux={}", "model.policy.num_values=1", "aux.byol.backbone_grad=false", *SMALL_BYOL]
    )
    losses, _ = agent.compute_loss(minibatch(agent))
    assert total_abs(backbone_grads(agent, losses["loss_ssl_byol"])) == 0.0
    assert total_abs(backbone_grads(agent, losses["loss_rl_policy"])) > 0


def test_barlow_auxiliary_loss_reaches_the_backbone_and_uses_a_sample_fraction() -> None:
    agent = make(
        [
            "aux={}",
            "model.policy.num_values=1",
            "aux.barlow.hidden_sizes=[32]",
            "aux.barlow.projection_dim=16",
            "aux.barlow.sample_frac=0.5",
        ]
    )
    aux = agent.auxiliaries["barlow"]
    mb = minibatch(agent, n=8)
    v1, v2, valid = aux.views(mb)
    assert v1.shape == (4, 2, 4, 84, 84) and valid.shape == (4, 2)
    losses, _ = agent.compute_loss(mb)
    assert losses["loss_ssl_barlow"].item() > 0
    assert total_abs(backbone_grads(agent, losses["loss_ssl_barlow"])) > 0


def test_ssl_on_vector_observations_is_a_clear_error(tmp_path: Path) -> None:
    from reprl.errors import ConfigError

    with pytest.raises(ConfigError, match="aux.byol: needs image observations"):
        train(load_config(["experiment=ppo_cartpole", "aux.byol.coef=1", f"run_dir={tmp_path}"]))


# ----------------------------------------------------------------------------- coefficients
def test_rl_coefficients_scale_their_terms_and_are_reported() -> None:
    mb = minibatch(make(["aux={}", "model.policy.num_values=1"]))
    base = make(["aux={}", "model.policy.num_values=1"])
    scaled = make(
        [
            "aux={}",
            "model.policy.num_values=1",
            "agent.rl_coef=2",
            "agent.pg_coef=3",
            "agent.ext_vf_coef=5",
        ]
    )
    scaled.model.load_state_dict(base.model.state_dict())
    a, _ = base.compute_loss(mb)
    b, _ = scaled.compute_loss(mb)
    torch.testing.assert_close(b["loss_rl_policy"], 6 * a["loss_rl_policy"])
    torch.testing.assert_close(b["loss_rl_value"], 10 * a["loss_rl_value"])
    torch.testing.assert_close(b["loss_rl_entropy"], 2 * a["loss_rl_entropy"])
    coefs = scaled.iteration_metrics()
    assert coefs["coef/a_RL"] == 2 and coefs["coef/a_act"] == 3 and coefs["coef/a_e"] == 5
    assert coefs["coef/a_H"] == pytest.approx(0.01) and coefs["coef/a_crt"] == 0.25


def test_intrinsic_value_coefficient_and_aux_coefficients_are_reported() -> None:
    agent = make(["aux.rnd.coef=0.5", "agent.int_vf_coef=0.3", "aux.byol.coef=0.1", *SMALL_BYOL])
    coefs = agent.iteration_metrics()
    assert coefs["coef/a_i"] == pytest.approx(0.3)
    assert coefs["coef/a_RND"] == 0.5 and coefs["coef/a_SSL_byol"] == pytest.approx(0.1)
    mb = minibatch(agent)
    no_int = make(["aux.rnd.coef=0.5", "agent.int_vf_coef=0", "aux.byol.coef=0.1", *SMALL_BYOL])
    no_int.model.load_state_dict(agent.model.state_dict())
    with_int = agent.compute_loss(mb)[0]["loss_rl_value"]
    without = no_int.compute_loss(mb)[0]["loss_rl_value"]
    assert with_int.item() > without.item()


def test_rl_backbone_grad_false_leaves_the_backbone_to_the_auxiliaries() -> None:
    agent = make(["aux={}", "model.policy.num_values=1", "agent.backbone_grad=false"])
    losses, _ = agent.compute_loss(minibatch(agent))
    rl = sum(losses.values())
    assert total_abs(backbone_grads(agent, rl)) == 0.0


# ----------------------------------------------------------------------------- projection
def test_update_projects_the_auxiliary_backbone_gradient_off_the_rl_gradient() -> None:
    """With grad_projection the backbone's gradient after update() is b + a', a' the
    projection of the auxiliary gradient (b: RL); elsewhere the plain sum."""
    agent = make(
        [
            "aux={}",
            "model.policy.num_values=1",
            "agent.grad_projection=true",
            "agent.max_grad_norm=null",
            "aux.byol.coef=50",
            *SMALL_BYOL,
        ]
    )
    mb = minibatch(agent)
    losses, _ = agent.compute_loss(mb)
    rl = sum(v for k, v in losses.items() if k.startswith("loss_rl_"))
    b = backbone_grads(agent, rl)
    a = backbone_grads(agent, losses["loss_ssl_byol"])
    result = project_conflicting(a, b)
    expected = [x + y for x, y in zip(b, result.aux)]
    info = agent.update(losses)
    shared = [p for p in agent.model.backbone.parameters()]
    for p, want in zip(shared, expected):
        torch.testing.assert_close(p.grad, want)
    torch.testing.assert_close(info["stats/grad_cosine"], result.cosine)
    assert info["stats/projection_fired"].item() == float(result.fired)
    dot = sum((x * y).sum() for x, y in zip(result.aux, b))
    if bool(result.fired):
        assert abs(dot.item()) < 1e-4 * max(1.0, total_abs(b) * total_abs(a))
    else:
        assert all(torch.equal(x, y) for x, y in zip(result.aux, a))


def test_projection_fires_on_conflicting_losses_in_a_short_run(tmp_path: Path) -> None:
    """A short Atari run with modified RND, BYOL and projection logs the cosine and the
    firing rate, a fraction in [0, 1]."""
    import json

    run = tmp_path / "r"
    train(
        load_config(
            [
                *ATARI,
                "agent.num_steps=16",
                "agent.num_minibatches=2",
                "agent.num_epochs=2",
                "total_steps=64",
                "agent.grad_projection=true",
                "aux.rnd.input=embedding",
                "aux.rnd.obs_norm_init_steps=16",
                *SMALL_BYOL,
                "eval.every_steps=0",
                "eval.episodes=1",
                *QUIET,
                f"run_dir={run}",
            ]
        )
    )
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "stats/projection_fired" in r]
    assert len(train_rows) == 2
    for r in train_rows:
        assert 0.0 <= r["stats/projection_fired"] <= 1.0
        assert -1.0 <= r["stats/grad_cosine"] <= 1.0
        assert r["losses/ssl_byol"] > 0 and "stats/reward_int" in r


# ----------------------------------------------------------------------------- resume
def test_modified_rnd_byol_resume_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    """Checkpoint mid-run and resume: the slow backbone, the EMA target, the heads, their
    optimiser and the RND statistics come back, so the metrics equal the uninterrupted run's."""
    import json

    common = [
        *ATARI,
        "env.backend=sync",
        "agent.num_steps=8",
        "agent.num_minibatches=2",
        "agent.num_epochs=1",
        "aux.rnd.input=embedding",
        "aux.rnd.slow_backbone=polyak",
        "aux.rnd.obs_norm_init_steps=16",
        "agent.grad_projection=true",
        *SMALL_BYOL,
        "eval.every_steps=0",
        "eval.episodes=1",
        "checkpoint.every_steps=32",
        "torch_threads=1",
        *QUIET,
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    train(load_config([*common, "total_steps=64", f"run_dir={full}"]))
    # Pretend the run died after step 32: keep only what existed then, and resume.
    shutil.copytree(full, part)
    for p in (part / "checkpoints").iterdir():
        if p.name != "step_32.pt":
            p.unlink()
    train(load_config([f"resume={part / 'checkpoints' / 'step_32.pt'}", *QUIET]))

    def losses(run: Path) -> list[dict[str, float]]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [
            {k: v for k, v in r.items() if k.startswith(("losses/", "stats/"))}
            for r in rows
            if r["global_step"] > 32 and "losses/ssl_byol" in r
        ]

    assert losses(full) and losses(part) == losses(full)
    weights_full = ckpt.load(full / "checkpoints" / "latest.pt")["agent"]
    weights_part = ckpt.load(part / "checkpoints" / "latest.pt")["agent"]
    for name in ("model", "aux"):
        assert_tree_equal(weights_full[name], weights_part[name])


def assert_tree_equal(a, b) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_tree_equal(a[k], b[k])
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    elif hasattr(a, "shape"):
        assert (a == b).all()
    else:
        assert a == b
