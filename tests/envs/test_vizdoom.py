"""ViZDoom scenarios through reprl's vizdoom family (skipped without vizdoom)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reprl.config import load_config
from reprl.envs import EnvConfig, list_env_ids, make_env_spec, make_vector_env, resolve_env
from reprl.envs import vizdoom as vizdoom_family
from reprl.errors import ConfigError, EnvError
from reprl.train import train

needs_vizdoom = pytest.mark.skipif(
    not vizdoom_family.installed(),
    reason="vizdoom is not installed (pip install --no-deps vizdoom==1.3.2)",
)
BASIC = "VizdoomBasic-v1"


@needs_vizdoom
def test_random_steps_sync() -> None:
    """Shapes, dtypes, finite rewards, episodes that end (Basic: 300 tics = 75 agent steps),
    and the Atari convention of zero-padded stacks after every (auto)reset."""
    cfg = EnvConfig(id=BASIC, num_envs=2, backend="sync")
    spec = make_env_spec(cfg)
    assert spec.obs_shape == (4, 84, 84) and spec.obs_dtype == np.uint8 and spec.frame_stack == 4
    assert spec.num_actions == 4 and spec.max_episode_steps == 75
    rng = np.random.default_rng(0)
    ends = 0
    with make_vector_env(cfg, seed=0) as env:
        obs = env.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert not obs[:, :3].any() and obs[:, 3].all(axis=(1, 2)).any()  # zero padding
        ended = np.zeros(2, bool)
        for _ in range(300):
            result = env.step(rng.integers(0, spec.num_actions, 2))
            assert result.obs.shape == (2, 4, 84, 84) and result.obs.dtype == np.uint8
            assert np.all(np.isfinite(result.reward)) and np.all(np.abs(result.reward) <= 120)
            # the step after an end is the reset: a fresh, zero-padded stack
            assert not result.obs[ended, :3].any()
            assert all(result.obs[i, 3].any() for i in np.flatnonzero(ended))
            ended = result.terminated | result.truncated
            ends += int(ended.sum())
    assert ends >= 6  # 2 envs x 300 steps, at most 75 steps an episode


@needs_vizdoom
def test_timeout_is_truncation_and_options() -> None:
    family = resolve_env(BASIC)
    env = family.make(BASIC, EnvConfig(id=BASIC))
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):  # NOOP until Basic's timeout
        obs, _, terminated, truncated, _ = env.step(0)
        steps += 1
    assert (steps, terminated, truncated) == (75, False, True)
    assert obs[-1].any()  # vizdoom has no screen at the end: the last frame is kept
    env.close()
    rgb = make_env_spec(EnvConfig(id=BASIC, kwargs={"rgb": True, "frame_stack": 2}))
    assert rgb.obs_shape == (6, 84, 84) and rgb.frame_stack == 2
    skip = make_env_spec(EnvConfig(id=BASIC, kwargs={"frame_skip": 2}), evaluation=True)
    assert skip.max_episode_steps == 150
    cover = make_env_spec(EnvConfig(id="VizdoomTakeCover-v1"), evaluation=True)
    assert cover.max_episode_steps == 1000 and cover.action_meanings[0] == "NOOP"
    with pytest.raises(ConfigError, match=r"env.kwargs.frameskip: .*frame_skip"):
        make_env_spec(EnvConfig(id=BASIC, kwargs={"frameskip": 2}))
    with pytest.raises(ConfigError, match="frame_stack must be an integer >= 1"):
        make_env_spec(EnvConfig(id=BASIC, kwargs={"frame_stack": 0}))
    with pytest.raises(ConfigError, match=r"did you mean 'VizdoomBasic-v1'"):
        make_env_spec(EnvConfig(id="VizdoomBasik-v1"))


@needs_vizdoom
def test_action_meanings_and_ids() -> None:
    ids = list_env_ids()
    for env_id in (BASIC, "VizdoomDefendCenter-v1", "VizdoomMyWayHome-v1", "VizdoomDeathmatch-v1"):
        assert env_id in ids
    assert not any(
        "MultiBinary" in i or (i.startswith("Vizdoom") and i.endswith("v0")) for i in ids
    )
    assert make_env_spec(EnvConfig(id=BASIC)).action_meanings == (
        "NOOP",
        "ATTACK",
        "MOVE_RIGHT",
        "MOVE_LEFT",
    )
    pairs = make_env_spec(EnvConfig(id=BASIC, kwargs={"max_buttons_pressed": 2}))
    assert pairs.num_actions == 7 and "MOVE_LEFT+ATTACK" in pairs.action_meanings
    # Deathmatch's delta buttons (continuous turning) are held at 0: 17 buttons + NOOP
    deathmatch = make_env_spec(EnvConfig(id="VizdoomDeathmatch-v1"))
    assert deathmatch.num_actions == 18 and "TURN_LEFT" in deathmatch.action_meanings
    with make_vector_env(EnvConfig(id=BASIC, num_envs=1), seed=0, render=True) as env:
        env.reset()
        env.step(np.array([1]))
        frame = env.render_first()
    assert frame.shape == (240, 320, 3) and frame.dtype == np.uint8 and frame.any()


@needs_vizdoom
def test_play_maps_ctrl_to_attack_and_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    monkeypatch.setenv("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    from reprl.data.datasets import load_episodes, load_metadata
    from reprl.tools.play import PlayRequest, VizdoomKeymap, play

    frame = itertools.count()

    def events() -> list[Any]:  # ctrl held from the first frame
        return [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_LCTRL)] if next(frame) == 0 else []

    logged: list[str] = []
    out = tmp_path / "ds"
    result = play(
        PlayRequest(["env=vizdoom"], fps=0, out=str(out), episodes=1),
        events=events,
        log=logged.append,
    )
    assert any(line.split() == ["ctrl", "ATTACK"] for line in logged)
    meta = load_metadata(out)
    meanings = meta["action_space"]["meanings"]
    assert meta["env_id"] == BASIC and meta["frame_stack"] == 4
    assert meta["observation"] == {"shape": [4, 84, 84], "dtype": "uint8"}
    (episode,) = load_episodes(out)
    assert result.episodes == 1 and 1 <= len(episode["action"]) <= 75
    assert (episode["action"] == meanings.index("ATTACK")).all()
    keys = VizdoomKeymap(tuple(meanings))
    assert keys.action({"ctrl", "left"}, []) == meanings.index("MOVE_LEFT")  # no combination
    turning = VizdoomKeymap(("NOOP", "MOVE_RIGHT", "MOVE_LEFT", "TURN_RIGHT", "TURN_LEFT"))
    assert turning.action({"left"}, []) == 4 and turning.action({"alt", "left"}, []) == 2


@needs_vizdoom
def test_train_smoke_ppo_vizdoom_basic(tmp_path: Path) -> None:
    cfg = load_config(
        [
            "experiment=ppo_vizdoom_basic",
            "env.num_envs=2",
            "total_steps=64",
            "agent.num_steps=32",
            "agent.num_minibatches=2",
            "agent.num_epochs=1",
            "eval.at_end=false",
            "eval.every_steps=0",
            "eval.episodes=1",
            "checkpoint.every_steps=0",
            "logger.progress=false",
            "logger.tensorboard=false",
            f"run_dir={tmp_path}",
        ]
    )
    assert cfg.env.id == BASIC and cfg.env.kwargs == {"frame_skip": 4}
    assert train(cfg).global_step == 64


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vizdoom_family, "installed", lambda: False)
    assert vizdoom_family.VIZDOOM.ids() == []
    assert load_config(["experiment=ppo_vizdoom_basic"]).env.id == BASIC  # configs compose
    with pytest.raises(EnvError, match=r"pip install --no-deps vizdoom==1\.3\.2"):
        make_env_spec(EnvConfig(id=BASIC))
