"""SSL auxiliaries' parts (issue 4): BYOL and Barlow Twins losses against slow loop references
and their fixed points, the EMA target (TargetNetwork) and the stop-gradient, the projector's
batch statistics, the intensity augmentation and the two views, and config validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_specs import IMAGE_DISCRETE
from torch import nn

from reprl.errors import ConfigError
from reprl.models.backbones import ConvConfig, ConvNet
from reprl.models.ssl import (
    BarlowTwinsConfig,
    BarlowTwinsHead,
    BYOLConfig,
    BYOLHead,
    Projector,
    ViewsConfig,
    barlow_twins_loss,
    byol_loss,
    byol_target,
    cross_correlation,
    intensity,
    two_views,
)
from reprl.schema import from_dict

SMALL_BYOL = BYOLConfig(hidden_sizes=[32], projection_dim=16, predictor_hidden_sizes=[32])


# ------------------------------------------------------------------------- slow references
def rows(x: torch.Tensor) -> np.ndarray:
    return x.detach().double().reshape(-1, x.shape[-1]).numpy()


def valid_rows(mask: torch.Tensor | None, n: int) -> list[int]:
    return list(range(n)) if mask is None else [i for i in range(n) if bool(mask.reshape(-1)[i])]


def reference_byol(p1, p2, z1, z2, mask=None) -> float:
    """Per-sample ``2 - 2 cos`` of each prediction against the other view's target, by loops."""
    a1, a2, t1, t2 = rows(p1), rows(p2), rows(z1), rows(z2)

    def term(p: np.ndarray, z: np.ndarray) -> float:
        return 2.0 - 2.0 * float(p @ z) / (np.linalg.norm(p) * np.linalg.norm(z))

    keep = valid_rows(mask, a1.shape[0])
    total = sum(0.5 * (term(a1[b], t2[b]) + term(a2[b], t1[b])) for b in keep)
    return total / len(keep)


def reference_barlow(z1, z2, lam: float, mask=None, eps: float = 1e-5) -> tuple[np.ndarray, float]:
    """Cross-correlation of the batch-normalised embeddings and the loss, by explicit loops."""
    a, b = rows(z1), rows(z2)
    keep = valid_rows(mask, a.shape[0])
    n, d = len(keep), a.shape[1]

    def normalise(x: np.ndarray) -> np.ndarray:
        out = np.zeros((n, d))
        for j in range(d):
            col = [x[i, j] for i in keep]
            mean = sum(col) / n
            var = sum((v - mean) ** 2 for v in col) / n
            out[:, j] = [(v - mean) / np.sqrt(var + eps) for v in col]
        return out

    na, nb = normalise(a), normalise(b)
    c = np.zeros((d, d))
    for i in range(d):
        for j in range(d):
            c[i, j] = sum(na[k, i] * nb[k, j] for k in range(n)) / n
    loss = 0.0
    for i in range(d):
        for j in range(d):
            loss += (1.0 - c[i, i]) ** 2 if i == j else lam * c[i, j] ** 2
    return c, loss


def hadamard(n: int) -> torch.Tensor:
    """Sylvester's ``n x n`` Hadamard matrix (``n`` a power of 2): orthogonal +-1 columns."""
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


# ------------------------------------------------------------------------- BYOL loss
@pytest.mark.parametrize("lead", [(12,), (3, 4)])
@pytest.mark.parametrize("masked", [False, True])
def test_byol_loss_matches_loop_reference(lead: tuple[int, ...], masked: bool) -> None:
    p1, p2, z1, z2 = (torch.randn(*lead, 6) for _ in range(4))
    mask = (torch.rand(lead) > 0.4) if masked else None
    if mask is not None:
        mask.reshape(-1)[0] = True
    got = byol_loss(p1, p2, z1, z2, mask)
    assert got.item() == pytest.approx(reference_byol(p1, p2, z1, z2, mask), rel=1e-5)


def test_byol_loss_is_zero_for_identical_and_four_for_opposite_vectors() -> None:
    v, w = torch.randn(8, 5), torch.randn(8, 5)
    v, w = v / v.norm(dim=-1, keepdim=True), w / w.norm(dim=-1, keepdim=True)
    # each prediction against the *other* view's target: p1 ~ z2, p2 ~ z1
    assert byol_loss(v, w, w, v).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(3.0 * v, w, 0.5 * w, v).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert byol_loss(v, w, -w, -v).item() == pytest.approx(4.0, abs=1e-6)


def test_byol_targets_get_no_gradient() -> None:
    """The stop-gradient: even targets that need grad (e.g. a momentum-0 target computed by
    the online network itself) receive no gradient from the loss."""
    p1, p2, z1, z2 = (torch.randn(6, 4, requires_grad=True) for _ in range(4))
    loss = byol_loss(p1, p2, z1, z2)
    g = torch.autograd.grad(loss, [p1, p2, z1, z2], allow_unused=True)
    assert g[0] is not None and g[1] is not None and g[0].abs().sum() > 0
    assert g[2] is None and g[3] is None


# ------------------------------------------------------------------------- Barlow Twins loss
@pytest.mark.parametrize("lead", [(10,), (2, 7)])
@pytest.mark.parametrize("masked", [False, True])
def test_barlow_twins_loss_matches_loop_reference(lead: tuple[int, ...], masked: bool) -> None:
    z1 = torch.randn(*lead, 5)
    z2 = 0.7 * z1 + 0.5 * torch.randn(*lead, 5)
    mask = (torch.rand(lead) > 0.3) if masked else None
    if mask is not None:
        mask.reshape(-1)[:2] = True
    lam = 0.3
    c_ref, loss_ref = reference_barlow(z1, z2, lam, mask)
    np.testing.assert_allclose(cross_correlation(z1, z2, mask).double().numpy(), c_ref, atol=1e-5)
    got = barlow_twins_loss(z1, z2, lambda_offdiag=lam, mask=mask)
    assert got.item() == pytest.approx(loss_ref, rel=1e-5)


def test_barlow_twins_loss_is_zero_for_identical_decorrelated_embeddings() -> None:
    # 8 samples x 4 dims: Hadamard columns have mean 0, variance 1 and are orthogonal, so C = I
    z = hadamard(8)[:, 1:5]
    assert barlow_twins_loss(z, z).item() == pytest.approx(0.0, abs=1e-8)
    # batch normalisation makes it invariant to a per-dimension affine map
    scaled = z * torch.tensor([3.0, 0.5, 2.0, 7.0]) + torch.tensor([5.0, -1.0, 0.0, 2.0])
    assert barlow_twins_loss(z, scaled).item() == pytest.approx(0.0, abs=1e-8)
    torch.testing.assert_close(cross_correlation(z, z, eps=0.0), torch.eye(4))
    # redundant (correlated) dims are penalised by lambda, mismatched views by the diagonal
    redundant = torch.cat([z[:, :2], z[:, :2]], 1)
    assert barlow_twins_loss(redundant, redundant, 1.0).item() == pytest.approx(4.0, abs=1e-4)
    assert barlow_twins_loss(redundant, redundant, 0.0).item() == pytest.approx(0.0, abs=1e-8)
    assert barlow_twins_loss(z, -z, 0.0).item() == pytest.approx(16.0, abs=1e-3)


def test_barlow_twins_gradients_reach_both_views() -> None:
    z1, z2 = torch.randn(16, 4, requires_grad=True), torch.randn(16, 4, requires_grad=True)
    g1, g2 = torch.autograd.grad(barlow_twins_loss(z1, z2), [z1, z2])
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0


# ------------------------------------------------------------------------- heads and targets
def small_encoder() -> ConvNet:
    return ConvNet(
        ConvConfig(channels=[8], kernels=[8], strides=[4], features_dim=24), IMAGE_DISCRETE
    )


def frames(n: int = 4, t: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (n, t, *IMAGE_DISCRETE.obs_shape), dtype=torch.uint8)


def test_heads_map_nt_features() -> None:
    features = torch.randn(3, 5, 24)
    (z, p), _ = BYOLHead(SMALL_BYOL, 24)(features)
    assert z.shape == p.shape == (3, 5, 16)
    cfg = BarlowTwinsConfig(hidden_sizes=[32, 32], projection_dim=12)
    emb, _ = BarlowTwinsHead(cfg, 24)(features)
    assert emb.shape == (3, 5, 12)


def test_projector_normalises_with_batch_statistics_in_eval_mode() -> None:
    """No running statistics: the TargetNetwork's eval-mode copy normalises like the online
    projector in train mode."""
    projector = Projector(6, [16], 4)
    x = torch.randn(10, 6) * 3 + 2
    train_out = projector.train()(x)
    torch.testing.assert_close(projector.eval()(x), train_out)
    assert not list(projector.buffers())


@pytest.mark.parametrize("momentum", [0.99, 0.9, 0.0])
def test_ema_target_moves_toward_online_by_tau(momentum: float) -> None:
    encoder = small_encoder()
    head = BYOLHead(SMALL_BYOL, encoder.out_dim)
    target = byol_target(encoder, head, momentum)
    online = [*encoder.parameters(), *head.projector.parameters()]  # not the predictor
    tgt = list(target.target.parameters())
    assert len(tgt) == len(online)
    for o, t in zip(online, tgt):
        assert torch.equal(o, t) and not t.requires_grad
    with torch.no_grad():  # a stand-in for an optimiser step
        for p in online:
            p.add_(torch.randn_like(p))
    before = [t.detach().clone().double() for t in tgt]
    assert target.update(1)
    tau = 1.0 - momentum
    for o, t, b in zip(online, tgt, before):
        want = b + tau * (o.detach().double() - b)  # = momentum * target + (1 - m) * online
        torch.testing.assert_close(t.double(), want, rtol=0, atol=1e-6)
    assert target.cfg.mode == "polyak" and target.cfg.tau == pytest.approx(tau)


def test_byol_step_trains_online_branch_and_not_target() -> None:
    """One BYOL update on two views of uint8 frames: gradients reach the encoder, projector
    and predictor; the target branch gets none."""
    encoder = small_encoder()
    head = BYOLHead(SMALL_BYOL, encoder.out_dim)
    target = byol_target(encoder, head, 0.99)
    obs = frames()
    v1, v2 = two_views(obs, pad=4, intensity_scale=0.05)
    features, _ = encoder(torch.cat([v1, v2]))  # one backbone pass over both views
    (_, p), _ = head(features)
    p1, p2 = p.chunk(2)
    (z1, _), (z2, _) = target(v1), target(v2)
    assert not z1.requires_grad
    loss = byol_loss(p1, p2, z1, z2)
    loss.backward()
    for module in (encoder, head.projector, head.predictor):
        grads = [q.grad for q in module.parameters()]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0
    assert all(q.grad is None for q in target.target.parameters())


# ------------------------------------------------------------------------- augmentations
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_intensity_keeps_shape_dtype_and_scales_each_sample(dtype: torch.dtype) -> None:
    obs = torch.randint(1, 200, (3, 4, 2, 6, 5)).to(dtype)
    scale = 0.05
    out = intensity(obs, scale, generator=torch.Generator().manual_seed(3))
    assert out.shape == obs.shape and out.dtype == dtype
    noise = torch.randn((3, 4), generator=torch.Generator().manual_seed(3))
    factor = (1 + scale * noise.clamp(-2, 2))[..., None, None, None]
    assert factor.min() >= 0.9 and factor.max() <= 1.1
    if dtype == torch.uint8:
        assert torch.equal(out, (obs.float() * factor).round().clamp(0, 255).to(torch.uint8))
    else:
        torch.testing.assert_close(out, obs * factor)
        ratio = (out / obs).reshape(12, -1)
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))  # one factor per image
    assert len(torch.unique(factor)) == 12  # every (n, t) its own
    assert intensity(obs, 0.0) is obs


def test_intensity_saturates_uint8() -> None:
    obs = torch.full((64, 1, 2, 2), 255, dtype=torch.uint8)
    out = intensity(obs, 0.4)
    assert out.dtype == torch.uint8 and out.max() == 255 and out.min() < 255


def test_two_views_are_independent_augmentations() -> None:
    obs = frames()
    v1, v2 = two_views(obs, generator=torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == obs.shape and v1.dtype == v2.dtype == torch.uint8
    assert not torch.equal(v1, v2) and not torch.equal(v1, obs)
    again = two_views(obs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again[0], v1) and torch.equal(again[1], v2)
    same = two_views(obs, pad=0, intensity_scale=0.0)
    assert same[0] is obs and same[1] is obs


# ------------------------------------------------------------------------- configs
def test_configs_validate_with_key_paths() -> None:
    byol = from_dict(BYOLConfig, {"momentum": 0.996, "views": {"pad": 2}}, "aux.byol")
    assert byol.views.pad == 2 and byol.views.intensity_scale == 0.05
    barlow = from_dict(BarlowTwinsConfig, {"lambda_offdiag": 0.01}, "aux.barlow")
    assert barlow.lambda_offdiag == 0.01
    bad = [
        (BYOLConfig, {"momentum": 1.0}, "aux.byol.momentum"),
        (BYOLConfig, {"predictor_hidden_sizes": [0]}, "aux.byol.predictor_hidden_sizes"),
        (BYOLConfig, {"coef": -1.0}, "aux.byol.coef"),
        (BYOLConfig, {"views": {"pad": -1}}, "aux.byol.views.pad"),
        (BarlowTwinsConfig, {"lambda_offdiag": -1.0}, "aux.byol.lambda_offdiag"),
        (BarlowTwinsConfig, {"projection_dim": 0}, "aux.byol.projection_dim"),
        (BarlowTwinsConfig, {"views": {"intensity_scale": 0.5}}, "aux.byol.views.intensity_scale"),
    ]
    for cls, data, key in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            from_dict(cls, data, "aux.byol")
    with pytest.raises(ConfigError, match=r"x\.views\.pad"):
        BYOLConfig(views=ViewsConfig(pad=-2)).validate("x")


def test_loss_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="mask"):
        byol_loss(*(torch.randn(4, 3) for _ in range(4)), mask=torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        barlow_twins_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="images"):
        intensity(torch.randn(4, 3), 0.1)


def test_projector_is_a_plain_module_tree() -> None:
    projector = Projector(5, [7, 9], 3)
    kinds = [type(m) for m in projector.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear]
