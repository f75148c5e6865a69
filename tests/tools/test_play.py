"""``reprl play``: scripted keyboard play, random and agent play, recorded as episode datasets.

Headless: SDL's dummy video driver, scripted pygame events, ``fps=0`` (no sleeping)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from reprl.data.datasets import load_episodes, load_metadata
from reprl.errors import ConfigError
from reprl.tools.play import JoystickKeymap, PlayRequest, play

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg(monkeypatch: pytest.MonkeyPatch) -> Any:
    """pygame on SDL's dummy video driver (set before pygame is imported and initialised)."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    monkeypatch.setenv("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    return pygame


def scripted(pg: Any, frames: dict[int, list[tuple[str, int]]], quit_at: int | None = None):
    """An event source: frame i returns the KEYDOWN/KEYUP events ``frames[i]`` (then Esc at
    ``quit_at``); ``calls`` counts the frames polled."""
    counter = itertools.count()
    kinds = {"down": pg.KEYDOWN, "up": pg.KEYUP}

    def events() -> list[Any]:
        i = next(counter)
        evs = [pg.event.Event(kinds[kind], key=key) for kind, key in frames.get(i, [])]
        if quit_at is not None and i >= quit_at:
            evs.append(pg.event.Event(pg.KEYDOWN, key=pg.K_ESCAPE))
        return evs

    return events


def run(request: PlayRequest, events: Callable[[], list[Any]] | None = None) -> Any:
    logged: list[str] = []
    result = play(request, events=events, log=logged.append)
    result.logged = logged
    return result


def test_cartpole_keyboard_play_replays_in_gymnasium(pg: Any, tmp_path: Path) -> None:
    # right held for frames 0-3, then left held until Esc at frame 120
    frames = {0: [("down", pg.K_RIGHT)], 4: [("up", pg.K_RIGHT), ("down", pg.K_LEFT)]}
    out = tmp_path / "ds"
    result = run(
        PlayRequest(["env=cartpole"], fps=0, out=str(out), seed=3),
        scripted(pg, frames, quit_at=120),
    )
    assert any("left" in line and "PUSH_LEFT" in line for line in result.logged)  # bindings
    meta = load_metadata(out)
    episodes = load_episodes(out)
    assert meta["env_id"] == "CartPole-v1" and meta["source"]["kind"] == "human"
    assert meta["observation"] == {"shape": [4], "dtype": "float32"}
    assert len(episodes) == meta["num_episodes"] == result.episodes >= 2
    # one step per frame: frames 0-3 pushed right, every later frame left; the unfinished
    # episode at Esc was dropped, so fewer than 120 steps were kept
    actions = np.concatenate([ep["action"] for ep in episodes])
    assert actions[:4].tolist() == [1, 1, 1, 1] and (actions[4:] == 0).all()
    assert meta["num_steps"] == len(actions) < 120
    # the same actions in a plain gymnasium CartPole (seeded as the vector env seeds env 0)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=3)
    for k, ep in enumerate(episodes):
        if k:
            obs, _ = env.reset()
        t_len = len(ep["action"])
        assert ep["obs"].shape == (t_len + 1, 4) and ep["obs"].dtype == np.float32
        np.testing.assert_allclose(ep["obs"][0], obs, rtol=1e-6)
        for t in range(t_len):
            obs, reward, term, trunc, _ = env.step(int(ep["action"][t]))
            np.testing.assert_allclose(ep["obs"][t + 1], obs, rtol=1e-6)
            assert ep["reward"][t] == ep["raw_reward"][t] == reward
            assert (ep["terminated"][t], ep["truncated"][t]) == (term, trunc)
        assert ep["terminated"][-1] and not ep["terminated"][:-1].any()


def test_joystick_keymap_combinations() -> None:
    full = [
        *("NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT"),
        *("DOWNLEFT", "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE"),
        *("UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"),
    ]
    keys = JoystickKeymap(tuple(full))
    assert keys.action(set(), []) == 0
    assert keys.action({"up", "right", "space"}, []) == full.index("UPRIGHTFIRE")
    assert keys.action({"down", "space"}, []) == full.index("DOWNFIRE")
    assert keys.action({"left", "right", "up"}, []) == full.index("UP")  # opposites cancel
    breakout = JoystickKeymap(("NOOP", "FIRE", "RIGHT", "LEFT"))
    assert breakout.action({"right", "space"}, []) == 2  # no RIGHTFIRE: RIGHT
    assert breakout.action({"up"}, []) == 0


@pytest.mark.atari
def test_atari_keys_map_to_action_meanings_and_store_uint8_stacks(pg: Any, tmp_path: Path):
    # FIRE for frames 0-2, then RIGHT: the ball is missed (episodic life: a learner episode
    # ends), then the game's 50-step time limit truncates the second episode
    frames = {0: [("down", pg.K_SPACE)], 3: [("up", pg.K_SPACE), ("down", pg.K_RIGHT)]}
    out = tmp_path / "ds"
    overrides = ["experiment=ppo_atari", "env.id=ALE/Breakout-v5", "env.max_episode_steps=50"]
    result = run(
        PlayRequest(overrides, fps=0, out=str(out), episodes=2),
        scripted(pg, frames, quit_at=400),
    )
    assert any("space" in line and "FIRE" in line for line in result.logged)
    meta = load_metadata(out)
    meanings = meta["action_space"]["meanings"]
    assert meanings == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert meta["observation"] == {"shape": [4, 84, 84], "dtype": "uint8"}
    assert meta["frame_stack"] == 4 and meta["env_config"]["atari"]["episodic_life"] is True
    first, second = load_episodes(out)
    assert first["terminated"][-1] and not first["truncated"].any()  # the lost life
    assert second["truncated"][-1] and not second["terminated"].any()
    # 50 game steps: both episodes plus the unrecorded step that stands for the reset
    assert len(first["action"]) + len(second["action"]) == 49
    actions = np.concatenate([first["action"], second["action"]])
    assert actions[:3].tolist() == [meanings.index("FIRE")] * 3
    assert (actions[3:] == meanings.index("RIGHT")).all()
    for ep in (first, second):
        t_len = len(ep["action"])
        assert ep["obs"].dtype == np.uint8 and ep["obs"].shape == (t_len + 1, 4, 84, 84)
        assert ep["obs"][:, -1].reshape(t_len + 1, -1).any(axis=1).all()  # newest frames real
        np.testing.assert_array_equal(ep["reward"], np.sign(ep["raw_reward"]))  # clipped


def test_random_taxi_samples_only_allowed_actions(pg: Any, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    run(
        PlayRequest(
            ["env=taxi", "env.max_episode_steps=60"],
            policy="random",
            fps=0,
            out=str(out),
            episodes=1,
        )
    )
    (ep,) = load_episodes(out)
    assert load_metadata(out)["source"]["kind"] == "random" and len(ep["action"]) == 60
    base = gym.make("Taxi-v4").unwrapped
    masks = np.array([base.action_mask(int(np.argmax(o))) for o in ep["obs"][:-1]], bool)
    assert (masks.sum(axis=1) < 6).all()  # the mask really forbids actions in every state
    assert masks[np.arange(60), ep["action"]].all()


def test_taxi_number_keys_are_turn_based(pg: Any, tmp_path: Path) -> None:
    # key presses on frames 0, 5 and 9; nothing else steps the env
    frames = {
        0: [("down", pg.K_1)],
        1: [("up", pg.K_1)],
        5: [("down", pg.K_KP4)],
        6: [("up", pg.K_KP4)],
        9: [("down", pg.K_0)],
    }
    out = tmp_path / "ds"
    result = run(
        PlayRequest(["env=taxi", "env.max_episode_steps=3"], fps=0, out=str(out), episodes=1),
        scripted(pg, frames, quit_at=30),
    )
    assert any("PICKUP" in line for line in result.logged)
    (ep,) = load_episodes(out)
    assert ep["action"].tolist() == [1, 4, 0] and ep["truncated"].tolist() == [False, False, True]


def test_agent_plays_and_records_its_actions(pg: Any, tmp_path: Path) -> None:
    from reprl.config import load_config
    from reprl.evaluation.cli import load_agent
    from reprl.train import train

    run_dir = tmp_path / "run"
    train(
        load_config(
            [
                "experiment=ppo_cartpole",
                "total_steps=1024",
                "logger.progress=false",
                "logger.tensorboard=false",
                "eval.every_steps=1024",
                "eval.episodes=1",
                "checkpoint.every_steps=1024",
                f"run_dir={run_dir}",
            ]
        )
    )
    out = tmp_path / "ds"
    result = run(
        PlayRequest(
            policy="agent",
            checkpoint=str(run_dir),
            deterministic=True,
            fps=0,
            out=str(out),
            episodes=2,
        )
    )
    assert result.episodes == 2
    meta = load_metadata(out)
    assert meta["source"] == {"kind": "agent", "checkpoint": str(run_dir)}
    episodes = load_episodes(out)
    agent, _, _ = load_agent(run_dir)
    for ep in episodes:
        obs = torch.from_numpy(ep["obs"][:-1])[:, None]
        first = torch.zeros(len(obs), 1, dtype=torch.bool)
        action, _, _ = agent.act(obs, agent.initial_state(len(obs)), first, deterministic=True)
        np.testing.assert_array_equal(ep["action"], action[:, 0].numpy())
    with pytest.raises(ConfigError, match="drop the overrides"):
        play(PlayRequest(["env=taxi"], policy="agent", checkpoint=str(run_dir)))


def test_continuous_env_is_a_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "reprl", "play", "env=pendulum", "--fps", "0"],
        cwd=tmp_path,
        env={**__import__("os").environ, "SDL_VIDEODRIVER": "dummy", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "continuous actions" in lines[0] and "Pendulum-v1" in lines[0]
    assert not (tmp_path / "datasets").exists()
