"""Every shipped experiment composes and validates; overrides reach the typed config."""

from __future__ import annotations

import importlib.util

import pytest

from reprl.config import describe, list_group, load_config, to_dict
from reprl.errors import ConfigError
from reprl.optim.schedules import Schedule


@pytest.mark.parametrize("name", list_group("experiment"))
def test_every_experiment_composes(name: str) -> None:
    if "mario" in name and importlib.util.find_spec("nes_py") is None:
        pytest.skip("mario extra not installed (its env check needs nes-py)")
    # presets from a pretrained backbone require its checkpoint (validated, not read, here)
    needs = (
        ["model.backbone.init_from=some/run"] if "pretrained" in name or "finetune" in name else []
    )
    cfg = load_config([f"experiment={name}", *needs])
    assert cfg.name == name
    assert describe(cfg)  # every component resolves through its registry


def test_overrides_and_types() -> None:
    cfg = load_config(["experiment=ppo_cartpole", "agent.lr=3e-4", "env.num_envs=16", "seed=3"])
    assert cfg.seed == 3 and cfg.env.num_envs == 16
    assert cfg.agent["lr"] == pytest.approx(3e-4)
    cfg = load_config(["experiment=ppo_atari", "env.id=ALE/Pong-v5"])
    assert cfg.env.id == "ALE/Pong-v5" and cfg.model.backbone["name"] == "nature_cnn"


def test_schedules_are_data() -> None:
    s = Schedule.from_value({"type": "linear", "start": 1.0, "end": 0.0}, "x")
    assert s(0.0) == 1.0 and s(0.5) == pytest.approx(0.5) and s(1.0) == 0.0
    assert Schedule.from_value(0.3, "x")(0.7) == 0.3
    c = Schedule.from_value({"type": "cosine", "start": 1.0, "end": 0.0, "end_frac": 0.5}, "x")
    assert c(0.25) == pytest.approx(0.5) and c(0.9) == pytest.approx(0.0)


def test_resolved_config_round_trips() -> None:
    from reprl.config import config_from_saved

    cfg = load_config(["experiment=ppo_lunarlander"])
    again = config_from_saved(to_dict(cfg))
    assert to_dict(again) == to_dict(cfg)


def test_every_env_has_a_solved_threshold() -> None:
    from reprl.envs import make_env_spec

    for env in ("cartpole", "acrobot", "mountaincar", "pendulum", "lunarlander", "taxi"):
        assert make_env_spec(load_config([f"env={env}"]).env).reward_threshold is not None, env
    # Atari: the published average-human score (HNS = 1), unless configured
    atari = load_config(["env=atari", "env.id=ALE/Pong-v5"]).env
    assert make_env_spec(atari).reward_threshold == 14.6
    atari = load_config(["env=atari", "env.reward_threshold=3"]).env
    assert make_env_spec(atari).reward_threshold == 3.0


@pytest.mark.parametrize(
    "experiment,key",
    [
        ("ppo_cartpole", "agent"),
        ("a2c_cartpole", "agent"),
        ("dqn_cartpole", "agent"),
        ("sac_pendulum", "agent"),
        ("r2d2_catch", "agent"),
        ("alphazero_catch", "agent"),
        ("byol_pretrain_atari", "trainer"),
    ],
)
@pytest.mark.parametrize("bound", [-1.0, 0.0])
def test_max_grad_norm_must_be_positive(experiment: str, key: str, bound: float) -> None:
    """A negative bound would flip the gradients' sign and 0 would turn clipping off: both are
    refused at load time with the key named; null (no clipping) and a positive bound load."""
    with pytest.raises(ConfigError, match=rf"{key}\.max_grad_norm: must be > 0 \(null"):
        load_config([f"experiment={experiment}", f"{key}.max_grad_norm={bound}"])
    assert load_config([f"experiment={experiment}", f"{key}.max_grad_norm=null"])
    assert load_config([f"experiment={experiment}", f"{key}.max_grad_norm=2.5"])
