"""Super Mario Bros through reprl's NumPy-2-safe adapter (skipped without nes-py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reprl.config import load_config
from reprl.envs import EnvConfig, make_env_spec, make_vector_env, mario, resolve_env
from reprl.errors import ConfigError, EnvError
from reprl.train import train

needs_mario = pytest.mark.skipif(
    not mario.installed(),
    reason="nes-py and gym-super-mario-bros are not installed (pip install 'reprl[mario]')",
)
STAGE = "SuperMarioBros-1-1-v0"


@needs_mario
@pytest.mark.parametrize(("backend", "steps"), [("sync", 300), ("async", 40)])
def test_random_steps(backend: str, steps: int) -> None:
    cfg = EnvConfig(id=STAGE, num_envs=2, backend=backend, num_workers=2)
    spec = make_env_spec(cfg)
    assert spec.obs_shape == (4, 84, 84) and spec.obs_dtype == np.uint8 and spec.frame_stack == 4
    assert spec.num_actions == 7 and spec.max_episode_steps is None
    rng = np.random.default_rng(0)
    with make_vector_env(cfg, seed=0) as env:
        obs = env.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert not obs[:, :3].any() and obs[:, 3].any()  # zero padding after reset
        start = time.perf_counter()
        for _ in range(steps):
            result = env.step(rng.integers(0, spec.num_actions, 2))
            assert result.obs.shape == (2, 4, 84, 84) and result.obs.dtype == np.uint8
            assert np.all(np.isfinite(result.reward)) and np.all(np.abs(result.reward) <= 60)
    print(f"{backend}: {2 * steps / (time.perf_counter() - start):.0f} agent steps/s (x2 envs)")


@needs_mario
def test_numpy2_overflow_is_handled() -> None:
    """The packages' uint8 arithmetic raises under NumPy 2; reprl's subclasses read the same
    values as Python ints. Running right exercises the RAM reads that used to overflow
    (x position past the first 256-pixel page, y position, the death check)."""
    from gym_super_mario_bros._roms import rom_path
    from nes_py import _rom, nes_env

    env = mario.MarioEnv(target=(1, 1), actions="right_only")
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        with pytest.raises(OverflowError):
            _ = _rom.ROM(rom_path(False, "vanilla")).prg_rom_stop  # nes-py's own class
        with pytest.raises(OverflowError):
            _ = np.frombuffer(bytes(2), np.uint8)[0] * 0x100  # what _x_position did
    # site-packages untouched: nes-py's NESEnv looks up reprl's ROM subclass in this process
    assert nes_env.ROM is not _rom.ROM and issubclass(nes_env.ROM, _rom.ROM)
    rom = nes_env.ROM(rom_path(False, "vanilla"))
    assert (rom.prg_rom_size, rom.chr_rom_size, rom.prg_rom_stop) == (32, 8, 16 + 32 * 1024)

    env.reset(seed=0)
    x_positions = []
    for i in range(300):
        _, reward, terminated, truncated, info = env.step(4 if (i // 8) % 2 == 0 else 3)
        assert isinstance(info["x_pos"], int) and isinstance(info["y_pos"], int)
        assert isinstance(info["life"], int) and isinstance(info["world"], int)
        x_positions.append(info["x_pos"])
        if terminated:
            break
    assert max(x_positions) > 256  # x = ram[0x6d] * 0x100 + ram[0x86]
    assert isinstance(env.nes._left_x_position, int)
    assert 0 <= env.nes._left_x_position < 256
    env.close()
    env.close()  # idempotent


@needs_mario
def test_action_sets_and_options() -> None:
    meanings = {
        name: make_env_spec(EnvConfig(id="SuperMarioBros-v0", kwargs={"actions": name}))
        for name in ("right_only", "simple", "complex")
    }
    assert meanings["right_only"].action_meanings == (
        "NOOP",
        "RIGHT",
        "RIGHT_A",
        "RIGHT_B",
        "RIGHT_A_B",
    )
    assert meanings["simple"].action_meanings[-2:] == ("A", "LEFT")
    assert meanings["complex"].num_actions == 12
    assert meanings["complex"].action_meanings[-2:] == ("DOWN", "UP")
    with pytest.raises(ConfigError, match=r"env.kwargs.actions: unknown 'simpel'.*simple"):
        make_env_spec(EnvConfig(id=STAGE, kwargs={"actions": "simpel"}))
    with pytest.raises(ConfigError, match=r"env.kwargs.action: .*actions"):
        make_env_spec(EnvConfig(id=STAGE, kwargs={"action": "simple"}))
    with pytest.raises(ConfigError, match="sticky_actions"):
        make_env_spec(EnvConfig(id=STAGE, kwargs={"sticky_actions": 1.5}))
    family = resolve_env(STAGE)
    clip = EnvConfig(id=STAGE, kwargs={"clip_rewards": True})
    assert family.score_transforms(clip, evaluation=False) == (False, True)
    assert family.score_transforms(clip, evaluation=True) == (False, False)
    assert family.time_limit(STAGE, EnvConfig(id=STAGE), evaluation=True) == mario.EVAL_TIME_LIMIT


def test_ids() -> None:
    assert mario.parse_env_id("SuperMarioBros-v0") == (None, "vanilla")
    assert mario.parse_env_id("SuperMarioBros-8-4-v3") == ((8, 4), "rectangle")
    for bad in ("SuperMarioBros-9-1-v0", "SuperMarioBros-1-5-v0", "SuperMarioBros-v4"):
        with pytest.raises(ConfigError, match="unknown env id"):
            make_env_spec(EnvConfig(id=bad))


@needs_mario
def test_sticky_actions_are_seeded() -> None:
    cfg = EnvConfig(id=STAGE, num_envs=1, kwargs={"sticky_actions": 0.25})

    def rollout(seed: int) -> np.ndarray:
        with make_vector_env(cfg, seed=seed) as env:
            env.reset()
            return np.stack([env.step(np.array([i % 7])).obs for i in range(40)])

    np.testing.assert_array_equal(rollout(3), rollout(3))


@needs_mario
def test_render() -> None:
    with make_vector_env(EnvConfig(id=STAGE, num_envs=1), seed=0, render=True) as env:
        env.reset()
        env.step(np.array([1]))
        frame = env.render_first()
    assert frame.shape == (240, 256, 3) and frame.dtype == np.uint8 and frame.any()


def test_missing_packages_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("nes_py", "gym_super_mario_bros"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    mario._load_nes.cache_clear()
    try:
        with pytest.raises(EnvError, match=r"pip install 'reprl\[mario\]'"):
            make_env_spec(EnvConfig(id=STAGE))
        with pytest.raises(EnvError, match=r"pip install 'reprl\[mario\]'"):
            mario.MarioEnv()
    finally:
        mario._load_nes.cache_clear()


@needs_mario
def test_train_smoke_with_the_atari_preset(tmp_path: Path) -> None:
    """PPO's Atari preset (NatureCNN) runs on Mario unchanged but for the env."""
    cfg = load_config(
        [
            "experiment=ppo_atari",
            "env=mario",
            f"env.id={STAGE}",  # ppo_atari sets env.id and env.backend itself
            "env.backend=sync",
            "env.num_envs=2",
            "total_steps=64",
            "agent.num_steps=32",
            "agent.num_minibatches=2",
            "agent.num_epochs=1",
            "eval.at_end=false",
            "eval.every_steps=0",
            "eval.episodes=1",
            "logger.progress=false",
            "logger.tensorboard=false",
            f"run_dir={tmp_path}",
        ]
    )
    assert cfg.env.kwargs == {"actions": "simple"}
    assert train(cfg).global_step == 64
