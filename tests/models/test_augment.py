"""DrQ's random shift against a slow per-sample pad-and-crop reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reprl.models.augment import random_shift, shift_images

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference_shift(obs: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Replicate-pad each sample by ``pad`` and crop the ``H x W`` window at offset
    ``(pad + dy, pad + dx)``, one sample at a time (DrQ's ReplicationPad2d + random crop)."""
    *lead, c, h, w = obs.shape
    flat, flat_shifts = obs.reshape(-1, c, h, w), shifts.reshape(-1, 2)
    out = torch.empty_like(flat)
    for b in range(flat.shape[0]):
        padded = F.pad(flat[b : b + 1].double(), (pad, pad, pad, pad), mode="replicate")[0]
        dy, dx = (int(v) + pad for v in flat_shifts[b])
        out[b] = padded[:, dy : dy + h, dx : dx + w].to(obs.dtype)
    return out.reshape(obs.shape)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("shape", [(5, 3, 12, 10), (2, 3, 6, 11, 9), (3, 7, 7)])
def test_random_shift_matches_reference(
    device: str, dtype: torch.dtype, shape: tuple[int, ...]
) -> None:
    pad = 3
    obs = torch.randint(0, 256, shape).to(dtype=dtype, device=device)
    seed = 11
    out = random_shift(obs, pad, generator=torch.Generator(device).manual_seed(seed))
    lead = shape[:-3]
    shifts = torch.randint(
        -pad,
        pad + 1,
        (*lead, 2),
        generator=torch.Generator(device).manual_seed(seed),
        device=device,
    )
    assert out.shape == obs.shape and out.dtype == dtype and out.device == obs.device
    torch.testing.assert_close(out, reference_shift(obs, shifts, pad), rtol=0, atol=0)
    assert shifts.abs().max() <= pad


def test_extreme_shifts_and_channels_share_the_shift() -> None:
    """Shifts beyond the image (clamped to the border row) and every channel moved alike."""
    image = torch.arange(4 * 5, dtype=torch.float32).reshape(4, 5)
    obs = torch.stack([image, image + 100.0])[None]  # (1, 2, 4, 5)
    for dy, dx in [(-4, 4), (3, -2), (0, 0), (1, 1)]:
        shifts = torch.tensor([[dy, dx]])
        out = shift_images(obs, shifts)
        torch.testing.assert_close(out, reference_shift(obs, shifts, 4), rtol=0, atol=0)
        torch.testing.assert_close(out[0, 1] - out[0, 0], torch.full((4, 5), 100.0))
    assert torch.equal(shift_images(obs, torch.zeros(1, 2, dtype=torch.long)), obs)


def test_pad_zero_is_identity_and_shifts_are_random() -> None:
    obs = torch.randint(0, 256, (4, 2, 9, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(random_shift(obs, pad=0), obs)
    shifted = random_shift(obs, pad=2)
    assert shifted.shape == obs.shape and shifted.dtype == torch.uint8
    assert not torch.equal(shifted, obs)  # 72 samples, each unshifted with p = 1/25
    with pytest.raises(ValueError, match="pad"):
        random_shift(obs, pad=-1)
    with pytest.raises(ValueError, match="images"):
        random_shift(torch.zeros(8, 8), pad=2)
