"""Recurrent necks (lstm, gru): stepping T = 1 at a time equals running the sequence, resets
included; the state packs into a Batch and survives a checkpoint; CleanRL's initialisation."""

from __future__ import annotations

import pytest
import torch

import reprl.models  # noqa: F401  (registers the necks)
from reprl.registry import NECKS
from reprl.runs import checkpoint as ckpt

RECURRENT = ["lstm", "gru"]


def make(name: str, in_dim: int = 5, **options: int):
    entry = NECKS.get(name)
    return entry.obj(entry.config_cls(**options), in_dim)


def parts(state) -> tuple[torch.Tensor, ...]:
    return tuple(state) if isinstance(state, tuple) else (state,)


def random_state(neck, n: int):
    return neck._state(tuple(torch.randn_like(p) for p in parts(neck.initial_state(n))))


@pytest.mark.parametrize("name", RECURRENT)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_stepping_equals_sequence_with_resets(name: str, num_layers: int) -> None:
    neck = make(name, hidden_size=7, num_layers=num_layers)
    n, t = 4, 12
    x = torch.randn(n, t, 5)
    is_first = torch.rand(n, t) < 0.25  # resets at random places, different per stream
    state0 = random_state(neck, n)  # a carried-over (non-initial) state
    (y, final), _ = neck(x, state0, is_first)
    assert y.shape == (n, t, 7)
    for p in parts(final):
        assert p.shape == (num_layers, n, 7)
    state, steps = state0, []
    for i in range(t):
        (y_i, state), _ = neck(x[:, i : i + 1], state, is_first[:, i : i + 1])
        steps.append(y_i)
    torch.testing.assert_close(torch.cat(steps, dim=1), y)
    for a, b in zip(parts(state), parts(final)):
        torch.testing.assert_close(a, b)
    # Slow reference: each stream alone, zeroing its state before every step it starts.
    for k in range(n):
        s = neck._state(tuple(p[:, k : k + 1] for p in parts(state0)))
        for i in range(t):
            if is_first[k, i]:
                s = neck.initial_state(1)
            (y_ki, s), _ = neck(x[k : k + 1, i : i + 1], s)
            torch.testing.assert_close(y_ki[0, 0], y[k, i])


@pytest.mark.parametrize("name", RECURRENT)
def test_reset_forgets_and_no_reset_remembers(name: str) -> None:
    neck = make(name)
    x = torch.randn(3, 6, 5)
    first = torch.zeros(3, 6, dtype=torch.bool)
    first[:, 2] = True
    (a, _), _ = neck(x, random_state(neck, 3), first)
    (b, _), _ = neck(x, random_state(neck, 3), first)
    torch.testing.assert_close(a[:, 2:], b[:, 2:])  # the state before the reset is forgotten
    assert not torch.allclose(a[:, :2], b[:, :2])
    (c, _), _ = neck(x, random_state(neck, 3), None)  # no resets: the state carries
    assert not torch.allclose(c[:, 2:], a[:, 2:])


@pytest.mark.parametrize("name", RECURRENT)
def test_state_packs_and_survives_checkpoint(name: str) -> None:
    neck = make(name, num_layers=2)
    state = random_state(neck, 3)
    packed = neck.state_to_batch(state)
    assert packed.shape == (3, 1, len(parts(state)), 2, 128)  # (N, 1, ...): indexable along N
    for a, b in zip(parts(neck.state_from_batch(packed)), parts(state)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Stream 1 alone, as a minibatch selects it.
    for a, b in zip(parts(neck.state_from_batch(packed[1:2])), parts(state)):
        torch.testing.assert_close(a, b[:, 1:2], rtol=0, atol=0)
    loaded = ckpt.round_trip({"recurrent_state": state})["recurrent_state"]
    assert type(loaded) is type(state)
    for a, b in zip(parts(loaded), parts(state)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", RECURRENT)
def test_orthogonal_init_and_shape_errors(name: str) -> None:
    neck = make(name, hidden_size=16)
    for pname, p in neck.rnn.named_parameters():
        if "bias" in pname:
            assert torch.count_nonzero(p) == 0
        else:  # (gates * H, in): orthonormal columns
            cols = p.shape[1]
            torch.testing.assert_close(p.T @ p, torch.eye(cols), atol=1e-5, rtol=0)
    state = neck.initial_state(2)
    with pytest.raises(ValueError, match=r"\(N, T, 5\)"):
        neck(torch.randn(2, 5), state)
    with pytest.raises(ValueError, match="state"):
        neck(torch.randn(3, 1, 5), state)
    with pytest.raises(ValueError, match="is_first"):
        neck(torch.randn(2, 4, 5), state, torch.zeros(2, 3, dtype=torch.bool))
