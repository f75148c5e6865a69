"""``model.backbone.init_from`` / ``model.backbone.freeze``: pretrained backbones, frozen or
not, across agents; clear errors for other architectures and missing checkpoints; resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from reprl.config import describe, load_config
from reprl.envs import make_env_spec
from reprl.errors import CheckpointError, ConfigError
from reprl.models import build_model
from reprl.models.pretrained import BackboneInit
from reprl.registry import BACKBONES
from reprl.runs import checkpoint as ckpt
from reprl.train import make_agent, train

QUIET = [
    "logger.progress=false",
    "logger.tensorboard=false",
    "eval.every_steps=0",
    "eval.at_end=false",
    "stop_on_solved=false",
]
PPO = [
    "experiment=ppo_cartpole",
    "model.backbone.hidden_sizes=[32]",  # ppo_cartpole's own backbone has no parameters
    "env.num_envs=4",
    "agent.num_steps=32",
    "agent.num_epochs=2",
    *QUIET,
]
DQN = [
    "experiment=dqn_cartpole",
    "model.backbone.hidden_sizes=[32]",
    "agent.learning_starts=32",
    "agent.train_freq=32",
    "agent.gradient_steps=4",
    "agent.batch_size=16",
    *QUIET,
]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PPO CartPole run (512 steps) whose backbone the tests start from."""
    run = tmp_path_factory.mktemp("pretrained") / "run"
    train(load_config([*PPO, "total_steps=512", f"run_dir={run}"]))
    return run


def saved_model(run: Path) -> dict[str, torch.Tensor]:
    """The agent model's state dict in a run's latest checkpoint."""
    return ckpt.load(ckpt.resolve(run))["agent"]["model"]


def part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def assert_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_every_backbone_accepts_init_from_and_freeze() -> None:
    for name in BACKBONES.names():
        assert issubclass(BACKBONES.get(name).config_cls, BackboneInit), name
    cfg = load_config([*PPO, "model.backbone.init_from=x.pt", "model.backbone.freeze=true"])
    keys = {key for key, _, _ in describe(cfg)}
    assert {"model.backbone.init_from", "model.backbone.freeze"} <= keys
    with pytest.raises(ConfigError, match=r"model\.backbone\.freeze: expected bool"):
        load_config([*PPO, "model.backbone.freeze=maybe"])


def test_init_from_run_folder_loads_the_backbone_only(pretrained: Path) -> None:
    cfg = load_config([*PPO, f"model.backbone.init_from={pretrained}"])
    spec = make_env_spec(cfg.env)
    torch.manual_seed(0)
    model = build_model(cfg.model, spec)
    source = saved_model(pretrained)
    state = model.state_dict()
    assert_equal(part(state, "backbone."), part(source, "backbone."))
    assert not any(torch.equal(state[k], source[k]) for k in part(state, "policy."))
    # The fresh parts draw the same numbers as without init_from.
    torch.manual_seed(0)
    fresh = build_model(load_config(PPO).model, spec).state_dict()
    assert_equal(part(state, "policy."), part(fresh, "policy."))

    report = model.init_report
    assert report.source == str(ckpt.resolve(pretrained))
    assert report.loaded == list(part(source, "backbone."))
    assert report.frozen == []
    assert report.new == [n for n, _ in model.named_parameters() if n.startswith("policy.")]
    assert all(p.requires_grad for p in model.parameters())


def test_agent_backbone_checkpoint_format(pretrained: Path, tmp_path: Path) -> None:
    """A pretraining trainer's checkpoint: ``agent.backbone`` holds the backbone alone."""
    backbone = {
        k.removeprefix("backbone."): v
        for k, v in part(saved_model(pretrained), "backbone.").items()
    }
    path = ckpt.save(tmp_path / "encoder.pt", {"config": {}, "agent": {"backbone": backbone}})
    cfg = load_config([*PPO, f"model.backbone.init_from={path}"])
    model = build_model(cfg.model, make_env_spec(cfg.env))
    assert_equal(dict(model.backbone.state_dict()), backbone)


def test_freeze_keeps_the_backbone_while_the_policy_learns(
    pretrained: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"  # a copy, deleted before the resume below
    shutil.copytree(pretrained, src)
    run = tmp_path / "frozen"
    cfg = load_config(
        [
            *PPO,
            f"model.backbone.init_from={src}",
            "model.backbone.freeze=true",
            "checkpoint.every_steps=256",
            "total_steps=512",
            f"run_dir={run}",
        ]
    )
    agent = make_agent(cfg, make_env_spec(cfg.env), torch.device("cpu"))
    in_optimizer = {id(p) for p in agent.optimizer.params}
    assert not any(id(p) in in_optimizer for p in agent.model.backbone.parameters())
    assert all(id(p) in in_optimizer for p in agent.model.policy.parameters())

    train(cfg)
    first = ckpt.load(run / "checkpoints" / "step_256.pt")["agent"]["model"]
    final = saved_model(run)
    source = part(saved_model(pretrained), "backbone.")
    assert_equal(part(first, "backbone."), source)
    assert_equal(part(final, "backbone."), source)
    assert any(not torch.equal(first[k], final[k]) for k in part(final, "policy."))
    report = yaml.safe_load((run / "backbone_init.yaml").read_text())
    assert report["frozen"] == list(source) and report["loaded"] == list(source)

    # Resume does not read init_from again (it is gone now) and keeps the backbone frozen.
    shutil.rmtree(src)
    for p in (run / "checkpoints").iterdir():
        if p.name != "step_256.pt":
            p.unlink()
    train(load_config([f"resume={run / 'checkpoints' / 'step_256.pt'}", "logger.progress=false"]))
    resumed = saved_model(run)
    assert_equal(part(resumed, "backbone."), source)
    assert_equal(resumed, final)  # exact resume, as without init_from
    assert yaml.safe_load((run / "backbone_init.yaml").read_text()) == report


def test_freeze_without_init_from_gives_fixed_random_features() -> None:
    cfg = load_config([*PPO, "model.backbone.freeze=true"])
    model = build_model(cfg.model, make_env_spec(cfg.env))
    report = model.init_report
    assert report.source is None and report.loaded == []
    assert report.frozen == [f"backbone.{n}" for n, _ in model.backbone.named_parameters()]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.policy.parameters())
    assert build_model(load_config(PPO).model, make_env_spec(cfg.env)).init_report is None


def test_dqn_starts_from_a_ppo_backbone(pretrained: Path, tmp_path: Path) -> None:
    """Cross-agent transfer: a PPO backbone, frozen, under DQN's Q-network and target."""
    run = tmp_path / "dqn"
    overrides = [
        *DQN,
        f"model.backbone.init_from={pretrained}",
        "model.backbone.freeze=true",
        "total_steps=128",
        f"run_dir={run}",
    ]
    cfg = load_config(overrides)
    agent = make_agent(cfg, make_env_spec(cfg.env), torch.device("cpu"))
    in_optimizer = {id(p) for p in agent.optimizer.params}
    assert not any(id(p) in in_optimizer for p in agent.model.backbone.parameters())
    train(cfg)
    source = part(saved_model(pretrained), "backbone.")
    final = saved_model(run)
    assert_equal(part(final, "backbone."), source)
    torch.manual_seed(cfg.seed)  # as train() does before building the model
    start = build_model(cfg.model, make_env_spec(cfg.env)).state_dict()
    assert_equal(part(start, "backbone."), source)
    assert any(not torch.equal(start[k], final[k]) for k in part(final, "policy."))


def test_other_architecture_names_the_parameter(pretrained: Path) -> None:
    cfg = load_config(
        [*PPO, "model.backbone.hidden_sizes=[16]", f"model.backbone.init_from={pretrained}"]
    )
    with pytest.raises(
        ConfigError, match=r"backbone\.net\.layers\.0\.weight has shape \(32, 4\).*\(16, 4\)"
    ):
        build_model(cfg.model, make_env_spec(cfg.env))
    cfg = load_config(
        [*PPO, "model.backbone.hidden_sizes=[32, 32]", f"model.backbone.init_from={pretrained}"]
    )
    with pytest.raises(ConfigError, match=r"missing net\.layers\.1\.weight, net\.layers\.1\.bias"):
        build_model(cfg.model, make_env_spec(cfg.env))


def test_missing_or_corrupt_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    cfg = load_config([*PPO, f"model.backbone.init_from={tmp_path / 'nope.pt'}"])
    with pytest.raises(CheckpointError, match="nope.pt"):
        build_model(cfg.model, make_env_spec(cfg.env))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cfg = load_config([*PPO, f"model.backbone.init_from={bad}"])
    with pytest.raises(CheckpointError, match="corrupt"):
        build_model(cfg.model, make_env_spec(cfg.env))


def test_resumed_runs_do_not_read_init_from(tmp_path: Path) -> None:
    """``load_pretrained=False`` (train's make_agent on resume): the run's checkpoint restores
    every weight, so a moved or deleted init_from is no error; freezing still applies."""
    overrides = [f"model.backbone.init_from={tmp_path / 'gone'}", "model.backbone.freeze=true"]
    cfg = load_config([*PPO, *overrides])
    model = build_model(cfg.model, make_env_spec(cfg.env), load_pretrained=False)
    report = model.init_report
    assert report.source is None and report.skipped and report.new == []
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert "init_from not read" in report.summary()
