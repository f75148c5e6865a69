"""Image augmentation for RL from pixels: DrQ's random shift.

DrQ (Kostrikov, Yarats and Fergus 2020, "Image Augmentation Is All You Need", section 3.1) and
DrQ-v2 (Yarats et al. 2021, section 3.1) pad each ``H x W`` image by ``pad`` pixels on every side,
repeating the border pixels, and crop a random ``H x W`` window back out: the image moves by an
integer ``(dy, dx)`` in ``[-pad, pad]^2`` with the border smeared into the gap. DrQ-v2 writes
this as a bilinear ``grid_sample`` at integer-aligned offsets; here it is exact integer indexing.

A crop of the replicate-padded image never needs the padded image itself: output pixel
``(i, j)`` of a sample shifted by ``(dy, dx)`` is input pixel
``(clamp(i + dy, 0, H - 1), clamp(j + dx, 0, W - 1))``. So :func:`shift_images` builds, per
sample, the flat source index of every output pixel from two clamped ranges and does one
``gather`` over all samples and channels: no padded copy, no Python loop over samples, any
dtype (uint8 frames stay uint8 until the network) on any device.
"""

from __future__ import annotations

import torch


def shift_images(obs: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift images ``(..., C, H, W)`` by integer ``shifts`` ``(..., 2)`` of ``(dy, dx)``,
    replicating border pixels into the uncovered gap (a crop of the replicate-padded image).

    Every leading index (e.g. ``(N, T)``) has its own shift, shared by its ``C`` channels. A
    positive ``dy`` moves the content up (output row ``i`` is input row ``i + dy``), a positive
    ``dx`` moves it left. Returns a new tensor of ``obs``'s shape, dtype and device.
    """
    if obs.dim() < 3:
        raise ValueError(f"expected images (..., C, H, W), got shape {tuple(obs.shape)}")
    *lead, c, h, w = obs.shape
    if tuple(shifts.shape) != (*lead, 2):
        raise ValueError(f"expected shifts of shape {(*lead, 2)}, got {tuple(shifts.shape)}")
    x = obs.reshape(-1, c, h * w)
    s = shifts.reshape(-1, 2).to(device=obs.device, dtype=torch.long)
    rows = torch.arange(h, device=obs.device) + s[:, :1]  # (B, H)
    cols = torch.arange(w, device=obs.device) + s[:, 1:]  # (B, W)
    rows = rows.clamp_(0, h - 1)
    cols = cols.clamp_(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).reshape(-1, 1, h * w)  # (B, 1, H*W)
    out = x.gather(2, index.expand(-1, c, -1))
    return out.reshape(obs.shape)


def random_shift(
    obs: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """DrQ's random shift of images ``(..., C, H, W)`` (uint8 or float, CPU or CUDA).

    Each leading sample (e.g. each ``(n, t)`` of ``(N, T, C, H, W)``) is shifted by its own
    ``(dy, dx)``, drawn uniformly from the integers in ``[-pad, pad]`` as
    ``torch.randint(-pad, pad + 1, (*lead, 2), generator=generator)`` on the generator's device
    (``obs``'s device without one), the same for all its channels; see :func:`shift_images`.
    DrQ and DrQ-v2 use ``pad=4`` for 84x84 frames. ``pad=0`` returns ``obs`` itself.
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return obs
    if obs.dim() < 3:
        raise ValueError(f"expected images (..., C, H, W), got shape {tuple(obs.shape)}")
    device = obs.device if generator is None else generator.device
    shifts = torch.randint(-pad, pad + 1, (*obs.shape[:-3], 2), generator=generator, device=device)
    return shift_images(obs, shifts)
