"""ReplayBuffer: windows equal the stored stream, lean frame stacks, ring wrap, priorities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reprl.data.nstep import nstep_targets
from reprl.data.replay import ReplayBuffer
from reprl.runs.checkpoint import to_numpy, to_storable


def make_stream(num_envs: int, steps: int, seed: int, obs_shape: tuple[int, ...] = (3,)) -> dict:
    """A random next-step-autoreset stream ``(N, T, ...)``: episode ends of both kinds, and
    the step after each end is an invalid reset step (reward 0, flags false)."""
    rng = np.random.default_rng(seed)
    n = num_envs
    s: dict[str, Any] = {
        "obs": rng.standard_normal((n, steps, *obs_shape)).astype(np.float32),
        "action": rng.integers(0, 6, (n, steps)),
        "reward": rng.standard_normal((n, steps)).astype(np.float32),
        "terminated": np.zeros((n, steps), bool),
        "truncated": np.zeros((n, steps), bool),
        "valid": np.ones((n, steps), bool),
    }
    for t in range(steps):
        if t > 0:
            s["valid"][:, t] = ~(s["terminated"][:, t - 1] | s["truncated"][:, t - 1])
        v = s["valid"][:, t]
        end = v & (rng.random(n) < 0.12)
        kind = rng.random(n) < 0.5
        s["terminated"][:, t] = end & kind
        s["truncated"][:, t] = end & ~kind
        s["reward"][~v, t] = 0.0
    first = np.zeros((n, steps), bool)
    first[:, 0] = True
    first[:, 1:] = ~s["valid"][:, :-1]
    s["is_first"] = first
    return s


def fill(buf: ReplayBuffer, s: dict, upto: int | None = None) -> None:
    steps = s["reward"].shape[1] if upto is None else upto
    for t in range(steps):
        buf.add(*(s[k][:, t] for k in ("obs", "action", "reward", "terminated", "truncated")),
                s["valid"][:, t])  # fmt: skip


def global_step(buf: ReplayBuffer, pos: np.ndarray) -> np.ndarray:
    """Slow reference: the global step last written at ring position ``pos``."""
    c = buf.capacity_per_env
    return pos + c * ((buf.count - 1 - pos) // c)


def check_windows(buf: ReplayBuffer, s: dict, batch: Any, window: int) -> np.ndarray:
    """Compare every sampled window with the stream, one sample at a time; return starts."""
    c = buf.capacity_per_env
    index = batch.extras["index"].numpy()[:, 0]
    env, g0 = index // c, global_step(buf, index % c)
    for b in range(len(index)):
        e, g = int(env[b]), int(g0[b])
        assert g >= buf.count - c and g + window <= buf.count  # written, not overwritten
        assert s["valid"][e, g]
        sl = slice(g, g + window)
        for name in ("obs", "action", "reward", "terminated", "truncated", "valid", "is_first"):
            np.testing.assert_array_equal(getattr(batch, name)[b].numpy(), s[name][e, sl], name)
    return g0


def test_round_trip_matches_stream() -> None:
    s = make_stream(3, 400, seed=1)
    buf = ReplayBuffer(3, 500, obs_shape=(3,), obs_dtype=np.float32)
    fill(buf, s)
    rng = np.random.default_rng(0)
    for n_step, seq_len in ((1, 1), (3, 1), (3, 5)):
        batch = buf.sample(256, rng, n_step=n_step, seq_len=seq_len)
        assert batch.shape == (256, n_step + seq_len)
        assert batch.obs.dtype == torch.float32 and batch.action.dtype == torch.int64
        check_windows(buf, s, batch, n_step + seq_len)
        # The window is exactly what nstep_targets needs: bootstrap index t + m is in range.
        _, _, boot = nstep_targets(
            batch.reward[:, :seq_len], batch.terminated[:, :seq_len],
            batch.truncated[:, :seq_len], batch.valid[:, :seq_len], 0.99, n_step,
        )  # fmt: skip
        assert int(boot[:, 0].max()) <= n_step


def test_ring_wraparound_never_returns_old_or_crossing_windows() -> None:
    s = make_stream(2, 1000, seed=2)
    buf = ReplayBuffer(2, 97, obs_shape=(3,), obs_dtype=np.float32)
    rng = np.random.default_rng(3)
    for upto in (150, 333, 1000):
        buf = ReplayBuffer(2, 97, obs_shape=(3,), obs_dtype=np.float32)
        fill(buf, s, upto)
        batch = buf.sample(512, rng, n_step=3, seq_len=2)
        g0 = check_windows(buf, s, batch, 5)
        assert g0.min() >= upto - 97 and g0.max() <= upto - 5
    # Every valid start in range is reachable (uniform over the allowed range).
    starts = set(global_step(buf, buf.sample(20000, rng, n_step=3, seq_len=2).extras["index"]
                             .numpy()[:, 0] % 97).tolist())  # fmt: skip
    ok = {g for g in range(1000 - 97, 1000 - 4) if s["valid"][:, g].any()}
    assert starts == ok


def simulate_stacks(
    num_envs: int, steps: int, k: int, seed: int, life_loss: bool, channels: int = 1
) -> dict:
    """A synthetic stacked-frame stream with an env's own stacking semantics: zero padding
    after a reset; with ``life_loss`` some episode ends keep the stack (episodic life).

    Observations are ``(k, 5, 4)`` (``channels == 1``, grayscale) or ``(k * channels, 5, 4)``:
    ``k`` frames of ``channels`` channels each (e.g. RGB), oldest first."""
    rng = np.random.default_rng(seed)
    s = make_stream(num_envs, steps, seed, obs_shape=(1,))
    obs = np.zeros((num_envs, steps, k, channels, 5, 4), np.uint8)
    stack = np.zeros((num_envs, k, channels, 5, 4), np.uint8)
    for t in range(steps):
        frame = rng.integers(1, 255, (num_envs, channels, 5, 4), dtype=np.uint8)
        for e in range(num_envs):
            keep = life_loss and s["terminated"][e, max(t - 2, 0)] and e == 0
            if t > 0 and s["is_first"][e, t] and not keep:
                stack[e] = 0
            stack[e] = np.concatenate([stack[e, 1:], frame[e][None]])
        obs[:, t] = stack
    s["obs"] = obs.reshape(num_envs, steps, k * channels, 5, 4)
    return s


@pytest.mark.parametrize("life_loss", [False, True])
def test_frame_stack_synthetic(life_loss: bool) -> None:
    s = simulate_stacks(2, 300, 4, seed=5, life_loss=life_loss)
    for cap in (400, 120):
        buf = ReplayBuffer(2, cap, obs_shape=(4, 5, 4), frame_stack=4)
        fill(buf, s)
        assert buf.obs.shape == (2, cap, 5, 4)
        batch = buf.sample(1024, np.random.default_rng(0), n_step=3, seq_len=2)
        check_windows(buf, s, batch, 5)


def rebuild_all(buf: ReplayBuffer, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Every step whose stack can still be rebuilt (stored, and its ``k - 1`` older frames
    not overwritten): ``(global steps, rebuilt stacks (N, len, *obs_shape))``."""
    oldest = max(0, buf.count - buf.capacity_per_env)
    first = oldest + (buf.frame_stack - 1 if oldest > 0 else 0)
    g = np.arange(first, steps)
    env = np.arange(buf.num_envs)[:, None]
    return g, buf._gather_obs(
        env, np.broadcast_to(g % buf.capacity_per_env, (buf.num_envs, g.size))
    )


@pytest.mark.parametrize("cap", [400, 37], ids=["no_wrap", "wrapped"])
def test_frame_stack_multichannel_rgb(cap: int) -> None:
    """``frame_stack=3`` RGB frames, obs ``(9, 5, 4)``: one 3-channel frame is stored per
    step, and stacks rebuilt by index equal the stacks added, zero-padded after resets and
    across the ring's wrap-around."""
    k, c, steps = 3, 3, 300
    s = simulate_stacks(2, steps, k, seed=11, life_loss=True, channels=c)
    resets = s["is_first"][:, 1:].sum()
    assert resets >= 10  # many episode boundaries, zero-padded (and, env 0, life losses)
    buf = ReplayBuffer(2, cap, obs_shape=(k * c, 5, 4), frame_stack=k)
    assert buf.frame_channels == c
    assert buf.obs.shape == (2, cap, c, 5, 4)  # one RGB frame per step, not the stack
    fill(buf, s)
    assert (buf.count > cap) == (cap == 37)
    batch = buf.sample(1024, np.random.default_rng(0), n_step=3, seq_len=2)
    assert batch.obs.shape == (1024, 5, k * c, 5, 4)
    g0 = check_windows(buf, s, batch, 5)
    # Sampled windows started right after resets (padded stacks) and, wrapped, held steps at
    # ring positions 0 .. k - 2, whose older frames sit at the other end of the ring.
    padded = ~s["obs"][:, :, : (k - 1) * c].reshape(2, steps, -1).any(-1)
    env = batch.extras["index"].numpy()[:, 0] // cap
    assert padded[env, g0].any()
    if cap == 37:
        assert ((g0[:, None] + np.arange(5)) % cap < k - 1).any()
    # Every rebuildable step, not only sampled ones, equals the stack that was added.
    g, rebuilt = rebuild_all(buf, steps)
    np.testing.assert_array_equal(rebuilt, s["obs"][:, g])
    # The channel order within a frame is kept: the newest frame is the last c channels.
    np.testing.assert_array_equal(rebuilt[:, :, -c:], s["obs"][:, g, -c:])


def test_from_spec_stores_frames_for_uint8_stacks_and_whole_float_obs() -> None:
    """An Atari-like spec (uint8, ``frame_stack=4``) stores one frame per step and rebuilds
    the stacks; a float32 (normalised) spec of the same shape stores whole observations."""
    from reprl.types import EnvSpec

    shape = (4, 5, 4)
    atari = EnvSpec("Pong-like", shape, np.dtype(np.uint8), "discrete", 6, frame_stack=4)
    normalised = EnvSpec("Pong-norm", shape, np.dtype(np.float32), "discrete", 6, frame_stack=4)
    lean = ReplayBuffer.from_spec(atari, 2, 120)
    whole = ReplayBuffer.from_spec(normalised, 2, 120)
    assert lean.frame_stack == 4 and lean.obs.shape == (2, 120, 5, 4)
    assert lean.obs.dtype == np.uint8 and lean.action.dtype == np.int64
    assert whole.frame_stack == 1 and whole.obs.shape == (2, 120, 4, 5, 4)
    assert whole.obs.dtype == np.float32
    assert lean.obs.nbytes * 4 * 4 == whole.obs.nbytes  # a quarter of the frames, 1 byte each
    s = simulate_stacks(2, 200, 4, seed=13, life_loss=False)
    fill(lean, s)
    s_float = {**s, "obs": s["obs"].astype(np.float32) / 255.0}
    fill(whole, s_float)
    for buf, stream in ((lean, s), (whole, s_float)):
        batch = buf.sample(256, np.random.default_rng(1), n_step=3, seq_len=1)
        check_windows(buf, stream, batch, 4)


@pytest.mark.atari
def test_frame_stack_matches_real_atari_stacks() -> None:
    pytest.importorskip("ale_py")
    from reprl.envs import make_vector_env
    from reprl.envs.config import EnvConfig

    cfg = EnvConfig(id="ALE/Pong-v5", num_envs=2, backend="sync", max_episode_steps=60)
    env = make_vector_env(cfg, seed=0)
    rng = np.random.default_rng(0)
    steps = 300
    keys = ("obs", "action", "reward", "terminated", "truncated", "valid")
    s: dict[str, list] = {k: [] for k in keys}
    try:
        obs = env.reset(seed=0)
        valid = np.ones(2, bool)
        for _ in range(steps):
            action = rng.integers(0, env.spec.num_actions, 2)
            res = env.step(action)
            for k, v in zip(keys, (obs, action, res.reward, res.terminated, res.truncated, valid)):
                s[k].append(np.array(v))
            obs, valid = res.obs, ~(res.terminated | res.truncated)
    finally:
        env.close()
    st = {k: np.stack(v, axis=1) for k, v in s.items()}
    st["is_first"] = np.concatenate([np.ones((2, 1), bool), ~st["valid"][:, :-1]], axis=1)
    assert st["obs"].shape == (2, steps, 4, 84, 84)
    assert (~st["valid"]).sum() >= 6  # several time-limit resets
    buf = ReplayBuffer.from_spec(env.spec, 2, 1000, frame_stack=4)
    fill(buf, st)
    batch = buf.sample(2000, np.random.default_rng(1), n_step=3, seq_len=1)
    g0 = check_windows(buf, st, batch, 4)
    # Right after resets: the padded stacks (zeros, no previous-episode frames) were sampled.
    firsts = {int(g) for g in np.nonzero(st["is_first"][:, 1:].any(0))[0] + 1}
    assert firsts & set(g0.tolist())
    # Every stored step (also those only in later window slots) rebuilds exactly.
    c = buf.capacity_per_env
    env_idx = np.repeat(np.arange(2), steps)[:, None]
    pos = np.tile(np.arange(steps), 2)[:, None] % c
    rebuilt = buf._gather_obs(env_idx, pos)[:, 0]
    np.testing.assert_array_equal(rebuilt, st["obs"].reshape(-1, 4, 84, 84))


def test_prioritized_frequencies_and_invalid_starts() -> None:
    s = make_stream(2, 60, seed=7)
    buf = ReplayBuffer(2, 50, obs_shape=(3,), obs_dtype=np.float32, prioritized=True, alpha=1.0)
    fill(buf, s)
    rng = np.random.default_rng(0)
    batch = buf.sample(4000, rng, n_step=2, seq_len=1, beta=0.5)
    assert batch.extras["weight"].shape == (4000, 1)
    check_windows(buf, s, batch, 3)
    # Give one start a large priority: it is drawn in proportion.
    c = buf.capacity_per_env
    idx = np.unique(batch.extras["index"].numpy()[:, 0])
    td = np.ones(idx.size)
    td[0] = 99.0
    buf.update_priorities(idx, td)
    batch = buf.sample(20000, rng, n_step=2, seq_len=1, beta=0.5)
    g0 = check_windows(buf, s, batch, 3)
    got = batch.extras["index"].numpy()[:, 0]
    expect = 99.0 / (99.0 + idx.size - 1)
    assert abs(np.mean(got == idx[0]) - expect) < 0.02
    w = batch.extras["weight"].numpy()[:, 0]
    assert w[got == idx[0]].max() < w[got != idx[0]].min()  # heavy item gets small IS weight
    assert g0.max() <= buf.count - 3 and g0.min() >= buf.count - c
    assert set(np.unique(got)) == set(idx)  # never a start outside the sampled-valid set
    # Tail positions are masked during a call only: their priority is back afterwards.
    assert buf.sampler is not None
    tail = int((buf.count - 1) % c)
    assert (buf.sampler.tree[tail] > 0) == s["valid"][0, -1]


def test_memory_atari_1m() -> None:
    """1M Atari transitions, frames stored once: ~7.07 kB per transition (7.07 GB) against
    4 * 84 * 84 * 2 = 56.4 kB for SB3 without ``optimize_memory_usage`` (obs + next_obs),
    a ratio of about 1/8."""
    buf = ReplayBuffer(1, 1_000_000, obs_shape=(4, 84, 84), frame_stack=4)
    per = buf.nbytes / 1_000_000
    assert per < 7200
    assert per / (4 * 84 * 84 * 2) < 0.25


def test_state_dict_round_trip() -> None:
    for prioritized in (False, True):
        s = simulate_stacks(2, 200, 4, seed=9, life_loss=True)
        kw = {"obs_shape": (4, 5, 4), "frame_stack": 4, "prioritized": prioritized}
        buf = ReplayBuffer(2, 150, **kw)
        fill(buf, s)
        if prioritized:
            b = buf.sample(64, np.random.default_rng(0))
            buf.update_priorities(b.extras["index"], np.arange(64.0))
        state = to_numpy(to_storable(buf.state_dict()))  # as a checkpoint stores it
        other = ReplayBuffer(2, 150, **kw)
        other.load_state_dict(state)
        rng_a, rng_b = np.random.default_rng(4), np.random.default_rng(4)
        a = buf.sample(128, rng_a, n_step=3, seq_len=2)
        b = other.sample(128, rng_b, n_step=3, seq_len=2)
        for (name, x), (_, y) in zip(a.tensors(), b.tensors()):
            assert torch.equal(x, y), name
        # And both keep writing identically.
        buf.add(s["obs"][:, 0], s["action"][:, 0], s["reward"][:, 0], s["terminated"][:, 0],
                s["truncated"][:, 0], s["valid"][:, 0])  # fmt: skip
        other.add(s["obs"][:, 0], s["action"][:, 0], s["reward"][:, 0], s["terminated"][:, 0],
                  s["truncated"][:, 0], s["valid"][:, 0])  # fmt: skip
        assert buf.nbytes == other.nbytes and buf.count == other.count
        for name in ("obs", "is_first", "reset", "valid"):  # next-first flag, stack resets
            np.testing.assert_array_equal(getattr(buf, name), getattr(other, name), name)


def test_state_dict_saves_stored_steps_without_copies(tmp_path: Path) -> None:
    """The checkpointed buffer: per-env views of the stored steps (nothing copied while
    saving, no unfilled ring positions on disk), and it restores exactly, also from the older
    whole-ring layout."""
    from reprl.runs import checkpoint as ckpt

    s = simulate_stacks(2, 200, 4, seed=17, life_loss=False)
    kw: dict[str, Any] = {"obs_shape": (4, 5, 4), "frame_stack": 4}
    buf = ReplayBuffer(2, 1000, **kw)
    fill(buf, s)
    state = buf.state_dict()
    names = ("obs", "action", "reward", "terminated", "truncated", "valid", "is_first", "reset")
    for name in names:
        assert len(state[name]) == 2
        for e, row in enumerate(state[name]):
            assert row.shape[0] == 200 and np.shares_memory(row, getattr(buf, name)[e])
    stored = sum(row.nbytes for name in names for row in state[name])
    path = ckpt.save(tmp_path / "b.pt", {"config": {}, "agent": {}, "buffer": state})
    # The file holds the 200 stored steps (plus the zip's headers), not the 1000-step rings.
    assert stored < path.stat().st_size < stored + 16_000
    assert path.stat().st_size < buf.nbytes / 3
    loaded = ckpt.to_numpy(ckpt.load(path)["buffer"])
    whole_rings = {**state, **{n: getattr(buf, n).copy() for n in ("obs", "reward", "valid")}}
    for saved in (loaded, whole_rings):
        other = ReplayBuffer(2, 1000, **kw)
        other.load_state_dict(saved)
        for name in ("obs", "action", "reward", "valid", "is_first", "reset"):
            np.testing.assert_array_equal(getattr(other, name), getattr(buf, name), name)
        a = buf.sample(64, np.random.default_rng(2), n_step=3)
        b = other.sample(64, np.random.default_rng(2), n_step=3)
        for (name, x), (_, y) in zip(a.tensors(), b.tensors()):
            assert torch.equal(x, y), name


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"capacity_per_env": 120}, "capacity_per_env is 150 in the checkpoint but 120 here"),
        ({"num_envs": 3}, "num_envs is 2 in the checkpoint but 3 here"),
        ({"frame_stack": 1}, "frame_stack is 4 in the checkpoint but 1 here"),
        ({"obs_shape": (4, 6, 4)}, r"obs is uint8 \(150, 5, 4\) per env in the checkpoint"),
        ({"obs_dtype": np.float32}, "obs is uint8 .* but float32"),
        ({"prioritized": True}, "uniform in the checkpoint but prioritized here"),
    ],
    ids=["capacity", "num_envs", "frame_stack", "obs_shape", "obs_dtype", "prioritized"],
)
def test_load_state_of_another_layout_fails_clearly(change: dict, match: str) -> None:
    """A checkpointed buffer that does not fit raises a CheckpointError naming what differs
    (not a NumPy broadcast error) and leaves the buffer untouched."""
    from reprl.errors import CheckpointError

    s = simulate_stacks(2, 200, 4, seed=9, life_loss=False)
    kw: dict[str, Any] = {"num_envs": 2, "capacity_per_env": 150, "obs_shape": (4, 5, 4)}
    buf = ReplayBuffer(**kw, frame_stack=4)
    fill(buf, s)
    state = to_numpy(to_storable(buf.state_dict()))
    other = ReplayBuffer(**{"frame_stack": 4, **kw, **change})
    with pytest.raises(CheckpointError, match=match):
        other.load_state_dict(state)
    assert other.count == 0 and not other.obs.any() and not other.valid.any()
