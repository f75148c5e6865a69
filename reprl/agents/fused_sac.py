"""SAC's whole gradient step with its gradients written out by hand (no autograd graph).

SAC Pendulum at RL Zoo's settings (batch 256, 256-256 ReLU actor and twin critics) spends its
step in 16 products of 256 x 256 x 256 and in everything around them: ~150 small ops, one
autograd node per layer, activation and loss term, and the copies that stacking the twin
critics' gradients needs. On a CPU whose matrix products run near peak for every library (a
Zen 3 core with AVX2: PyTorch's MKL, NumPy's OpenBLAS and oneDNN all within a few percent),
the products alone are ~45% of such a step through autograd; the rest is what this module
removes. :func:`sac_losses` computes the three losses of :meth:`reprl.agents.sac.SAC.compute_loss`
and every gradient of them in plain no-grad ops, writes the twin critics' weight gradients
straight into their stacked layout, and returns the losses through
:func:`reprl.agents.given_grads.with_grads`: each loss is an ordinary autograd output whose
backward hands out its own gradients, so the loop's one backward of the sum, or a backward of
any one loss, gives exactly what autograd would.

The maths (per batch of ``B`` windows; ``a~ = tanh(u)``, ``u = mean + std * eps``):

- critics: ``L_c = 0.5 sum_j mean_i (Q_j(s_i, a_i) - y_i)^2``, ``dL_c/dQ_j = (Q_j - y) / B``,
  then each critic's layers back to its input (the features' part flows on into a backbone);
- actor: ``L_a = mean_i (alpha log pi(a~_i|s_i) - min_j Q_j(s_i, a~_i))`` with the critics as
  constants: the min's gradient ``-1/B`` goes to the critic that is the minimum in row ``i``
  (as autograd's ``min`` does) and back through it to ``a~``; then
  ``dL_a/du = dL_a/da~ (1 - a~^2) + (alpha / B) 2 a~`` (``d/du -log(1 - tanh(u)^2) = 2
  tanh(u)``), ``dL_a/dmean = dL_a/du``, ``dL_a/dlog_std = dL_a/du std eps - alpha / B``
  (zero where the clamp of ``log_std`` is active), and the actor's layers back to its input;
- entropy coefficient: ``L_alpha = -log_alpha mean_i (log pi_i + H)``,
  ``dL_alpha/dlog_alpha = -mean_i (log pi_i + H)``.

The step has two independent parts, both reading the parameters from before the update: the
critics' (target, critic loss, backward: ~8 products with the next actions) and the actor's
(sample, critics on ``(s, a~)``, backward through them and the actor: ~7). With
``SACConfig.parallel_actor`` the actor's part (and the next actions, first) runs on a second
thread while the calling one computes the critics': PyTorch releases the GIL inside each op,
so on two cores the products of the two parts overlap (measured 1.25-1.5x per SAC Pendulum
gradient step on a 2-core Zen 3, interleaved runs; 2 torch intra-op threads gave 1.2-1.3x).

Where the nets fit (:meth:`reprl.models.native.MLP.fits`: a narrow input, a head of at most
8 outputs) and the C kernels are compiled, each network pass is one C call
(:class:`reprl.models.native.MLP`: the products by PyTorch's BLAS, everything around them in
C, no concatenated inputs, rows picked by index); elsewhere the same maths runs as PyTorch
ops. The critics' part computes the target first on the serial path, then each critic's
forward and backward back to back, while its activations are in cache.

``tests/test_fused_sac.py`` checks losses and every gradient against the autograd path, and
the two-thread step against the one-thread step (bit for bit).
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from reprl.agents.given_grads import Part, hand_written
from reprl.models import kernels, native
from reprl.models.actor_q import squashed_gaussian
from reprl.models.layers import tanh

FUSED_SAC = True
"""Let SAC use :func:`sac_losses` where it applies (False: always autograd, for A/B)."""


@dataclass
class Nets:
    """The parameters :func:`sac_losses` reads, as lists of layers (input to output)."""

    actor_w: list[torch.Tensor]
    """Actor layers' weights ``(out, in)`` (``nn.Linear`` layout; the last: ``(2A, H)``)."""
    actor_b: list[torch.Tensor]
    """Actor layers' biases ``(out,)``."""
    critic_w: list[torch.Tensor]
    """Stacked critic layers' weights ``(k, in, out)`` (the last: ``(k, H, 1)``)."""
    critic_b: list[torch.Tensor]
    """Stacked critic layers' biases ``(k, 1, out)``."""
    log_std_min: float
    log_std_max: float
    actor_layers: list[tuple[torch.Tensor, torch.Tensor]] = field(init=False, repr=False)
    """The actor's layers as ``(weight (in, out), bias (out,))`` views
    (:func:`reprl.models.kernels._mlp_layer`), made once: a step would otherwise remake ~50
    views (~2 us each). Views stay valid: parameters change in place only (optimizer steps,
    Polyak averaging, ``load_state_dict``)."""
    critic_layers: list[list[tuple[torch.Tensor, torch.Tensor]]] = field(init=False, repr=False)
    """Each critic's layers as such views."""
    actor_mlp: native.MLP | None = field(init=False, repr=False)
    """The actor as one C call per pass (:class:`reprl.models.native.MLP`), where it fits."""
    critic_mlps: list[native.MLP] | None = field(init=False, repr=False)
    """Each critic as such, where they fit (all or none: None)."""

    def __post_init__(self) -> None:
        with torch.no_grad():
            self.actor_layers = kernels.layer_views(self.actor_w, self.actor_b)
            critics = _chain(self.critic_w, self.critic_b)
            self.critic_layers = [
                [kernels._mlp_layer(critics, i, j, True) for i in range(len(self.critic_w))]
                for j in range(self.critic_w[0].shape[0])
            ]
        fit = all(map(native.MLP.fits, [self.actor_layers, *self.critic_layers]))
        self.actor_mlp = native.MLP(self.actor_layers) if fit else None
        self.critic_mlps = [native.MLP(layers) for layers in self.critic_layers] if fit else None

    @classmethod
    def of(cls, policy: torch.nn.Module) -> Nets | None:
        """An ``actor_q`` policy's parameters when its actor is a tanh-Gaussian ReLU MLP and its
        critics are ReLU MLPs, all float32 on CPU; None otherwise (autograd then)."""
        actor_mlp, critics = policy.actor_mlp, policy.critics
        hidden = critics.hidden
        if not (policy.gaussian and actor_mlp.fusable and hidden is not None):
            return None
        if hidden.act is not torch.relu:
            return None
        names = hidden._names
        nets = cls(
            actor_w=[la.weight for la in actor_mlp.layers] + [policy.actor_out.weight],
            actor_b=[la.bias for la in actor_mlp.layers] + [policy.actor_out.bias],
            critic_w=[getattr(hidden, w) for w, _ in names] + [critics.out_weight],
            critic_b=[getattr(hidden, b) for _, b in names] + [critics.out_bias],
            log_std_min=policy.cfg.log_std_min,
            log_std_max=policy.cfg.log_std_max,
        )
        params = [*nets.actor_w, *nets.actor_b, *nets.critic_w, *nets.critic_b]
        if not all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params):
            return None
        return nets


def _input_grad(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A layer's input gradient ``grad (R, out) @ weight (in, out)^T``; for a 1-wide
    output (a Q layer) a broadcast multiply, as a K=1 matrix product MKL measured ~20x
    slower."""
    if weight.shape[1] == 1:
        return grad * weight.view(1, -1)
    return torch.mm(grad, weight.t())


def _chain(weights: list[torch.Tensor], biases: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Layers' parameters interleaved ``(w0, b0, w1, b1, ...)``, as
    :func:`reprl.models.kernels._mlp_chain` takes them."""
    return tuple(p for pair in zip(weights, biases, strict=True) for p in pair)


def _forward(
    nets: Nets, critic: int | None, x1: torch.Tensor, x2: torch.Tensor | None, fast: bool
) -> tuple[torch.Tensor, Any]:
    """The actor's (``critic`` None) or critic ``critic``'s outputs on ``cat([x1, x2], -1)``
    and what its backward needs: with ``fast``, one C call (:class:`reprl.models.native.MLP`,
    without concatenating the inputs) and its workspace; else the layer inputs and outputs
    ``[x, h1, ..., out]`` by PyTorch ops."""
    if fast:
        assert nets.actor_mlp is not None and nets.critic_mlps is not None
        mlp = nets.actor_mlp if critic is None else nets.critic_mlps[critic]
        return mlp.forward(x1, x2)
    layers = nets.actor_layers if critic is None else nets.critic_layers[critic]
    x = x1 if x2 is None else torch.cat([x1, x2.to(x1.dtype)], dim=-1)
    acts = kernels._chain_forward(x, layers, False)
    return acts[-1], acts


def _fast(nets: Nets, *inputs: torch.Tensor) -> bool:
    """Whether this step takes the C kernels (the nets fit, compiled, float32 inputs)."""
    return (
        nets.critic_mlps is not None
        and native.available()
        and all(x.dtype == torch.float32 for x in inputs)
    )


def _sample(out: torch.Tensor, eps: torch.Tensor, nets: Nets, with_log_prob: bool = True):
    """The tanh-Gaussian sample of the actor's output ``out (B, 2A)`` with noise ``eps``:
    ``(a~, log pi (None without with_log_prob), std, log_std before its clamp)``, as
    :meth:`ActorQPolicy.sample` computes them."""
    mean, raw = out.chunk(2, dim=-1)
    if with_log_prob and native.available() and out.is_contiguous() and eps.is_contiguous():
        # one C pass instead of ~17 small ops (reprl.models.native)
        sample = native.squashed_gaussian(out, eps, nets.log_std_min, nets.log_std_max)
        return *sample, raw
    log_std = raw.clamp(nets.log_std_min, nets.log_std_max)
    action, log_prob, std = squashed_gaussian(mean, log_std, eps, with_log_prob)
    return action, log_prob, std, raw


def act(nets: Nets, features: torch.Tensor, deterministic: bool) -> torch.Tensor:
    """Normalised actions ``(N, T, A)`` for features ``(N, T, D)``, as
    :meth:`ActorQPolicy.sample` with ``with_log_prob=False`` computes them (the same noise
    drawn): the actor in one C call where it fits (:class:`reprl.models.native.MLP`, to float32
    rounding), else from its kept views without the policy's module calls (its numbers bit for
    bit; ~60 us less per Pendulum env step than the modules, Zen 3, 1 thread)."""
    n, t = features.shape[:2]
    x = features.reshape(n * t, -1)
    native_ok = nets.actor_mlp is not None and native.available() and x.dtype == torch.float32
    out = nets.actor_mlp.forward(x)[0] if native_ok else kernels.chain(x, nets.actor_layers)
    mean = out[:, : out.shape[1] // 2]
    if deterministic:
        action = tanh(mean)
    else:
        action = _sample(out, torch.randn_like(mean), nets, with_log_prob=native_ok)[0]
    return action.view(n, t, -1)


class _Ready:
    """A value already computed, with a future's ``result()`` (the serial path)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        """The value."""
        return self.value


_worker: concurrent.futures.ThreadPoolExecutor | None = None
_worker_pid = 0


def _second_thread() -> concurrent.futures.ThreadPoolExecutor:
    """One worker thread per process (made on first use; a forked child makes its own), with
    as many torch threads as the calling thread had then."""
    global _worker, _worker_pid
    if _worker is None or _worker_pid != os.getpid():
        _worker = concurrent.futures.ThreadPoolExecutor(
            1, "reprl-sac", initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),)
        )
        _worker_pid = os.getpid()
    return _worker


def _on(parallel: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` without grad mode: on the second thread when ``parallel`` (a future),
    else here and now (its value, as a :class:`_Ready`)."""
    if not parallel:
        return _Ready(fn(*args))

    def run() -> Any:
        with torch.no_grad():  # grad mode is per thread
            return fn(*args)

    return _second_thread().submit(run)


@hand_written
def sac_losses(
    nets: Nets,
    target_nets: Nets,
    feat: torch.Tensor,
    feat_boot: torch.Tensor,
    target_boot: torch.Tensor,
    action: torch.Tensor,
    returns: torch.Tensor,
    discount: torch.Tensor,
    log_alpha: torch.Tensor | None,
    alpha_value: float | torch.Tensor,
    target_entropy: float,
    actor_step: bool,
    parallel: bool = False,
) -> tuple[dict[str, Part], dict[str, torch.Tensor]]:
    """SAC's losses (``loss_rl_critic``, and with ``actor_step`` ``loss_rl_actor`` and, with
    ``log_alpha``, ``loss_rl_alpha``) and statistics, each loss carrying its hand-computed
    gradients (see the module docstring).

    Args:
        nets, target_nets: the online and target policies' parameters (:meth:`Nets.of`).
        feat: features of the observations learned from ``(B, D)`` (a graph if a backbone
            with parameters made them: the critic loss's gradient flows into it).
        feat_boot, target_boot: online and target features of the bootstrap observations.
        action: the normalised actions taken ``(B, A)``.
        returns, discount: the n-step returns and bootstrap discounts ``(B,)``.
        log_alpha: the learned log entropy coefficient (None: fixed).
        alpha_value: the entropy coefficient in force (a constant for the losses).
        target_entropy: the autotuning target ``H``.
        actor_step: also the actor's (and the coefficient's) loss this step.
        parallel: compute the next actions and the actor's part on a second thread while
            this one computes the critics' (``SACConfig.parallel_actor``). Both parts read
            the parameters only and each writes its own tensors, with the same ops either
            way: the results are those of the serial path, bit for bit.
    """
    rows = feat.shape[0]
    alpha = float(alpha_value)
    feat_value = feat.detach()
    # noise in the autograd path's order: next actions first, then the actor loss's
    eps_boot = torch.randn(rows, action.shape[1], dtype=feat.dtype)
    eps = torch.randn(rows, action.shape[1], dtype=feat.dtype) if actor_step else None
    # The second thread takes the next actions first (the critics' part waits for them only
    # after its own forward) and then the actor's part: ~7 and ~8 products on each side.
    fast = _fast(nets, feat, feat_boot, target_boot, action, returns, discount)
    boot = _on(parallel, _next_actions, nets, feat_boot, eps_boot, fast)
    actor = None
    if eps is not None:
        actor = _on(
            parallel, _actor_part, nets, feat_value, eps, alpha, log_alpha, target_entropy, fast
        )
    try:
        parts, info = _critic_part(
            nets, target_nets, feat, target_boot, action, returns, discount, boot, alpha, fast
        )
    finally:
        # never leave the second thread working on this step's tensors
        done = actor.result() if actor is not None else None
    if done is not None:
        parts |= done[0]
        info |= done[1]
    return parts, info


def _next_actions(
    nets: Nets, feat_boot: torch.Tensor, eps: torch.Tensor, fast: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a', log pi(a'|s'))``: the online actor's sample on the bootstrap features."""
    out, _ = _forward(nets, None, feat_boot, None, fast)
    next_action, next_log_prob, _, _ = _sample(out, eps, nets)
    return next_action, next_log_prob


def _critic_part(
    nets: Nets,
    target_nets: Nets,
    feat: torch.Tensor,
    target_boot: torch.Tensor,
    action: torch.Tensor,
    returns: torch.Tensor,
    discount: torch.Tensor,
    boot: Any,
    alpha: float,
    fast: bool,
) -> tuple[dict[str, Part], dict[str, torch.Tensor]]:
    """The critic loss with its gradients (and into ``feat`` where it has a graph);
    ``boot``'s ``result()`` gives :func:`_next_actions`."""
    rows = feat.shape[0]
    feat_value = feat.detach()
    w_grads = [torch.empty_like(w) for w in nets.critic_w]
    b_grads = [torch.empty_like(b) for b in nets.critic_b]
    feat_grad = torch.zeros_like(feat_value) if feat.requires_grad else None

    def target() -> torch.Tensor:
        """y = R + discount (min_j Q'_j(s', a') - alpha log pi(a'|s'))"""
        next_action, next_log_prob = boot.result()
        next_q = [
            _forward(target_nets, j, target_boot, next_action, fast)[0]
            for j in range(len(target_nets.critic_layers))
        ]
        if fast:  # one C pass
            return native.sac_target(next_q, next_log_prob, returns, discount, alpha)
        min_q = torch.stack([q[:, 0] for q in next_q]).min(0).values
        return returns + discount * (min_q - alpha * next_log_prob)

    def backward(j: int, saved: Any, q_j: torch.Tensor, y: torch.Tensor) -> None:
        """Critic j's gradients from dL_c/dQ_j = (Q_j - y) / B (and the features'), and its
        part of the loss (and of the mean Q) into ``terms``."""
        if fast:  # one C pass for the loss's terms, one C call for every layer's gradients
            grad_q, mse, q_mean = native.sac_critic_grad(q_j, y)
            terms.append((mse, q_mean))
            nets.critic_mlps[j].backward(  # type: ignore[index]
                saved, grad_q.view(rows, 1), feat_value, action,
                dw=native.addresses(w_grads, j), db=native.addresses(b_grads, j),
                dx=feat_grad,
            )  # fmt: skip
        else:
            grad_q = (q_j[:, 0] - y).mul_(1.0 / rows)
            _critic_backward(nets, j, saved, grad_q, w_grads, b_grads, feat_grad)

    # Each critic's forward on (s, a), and its backward right after it while its activations
    # are still in cache, once the target is known: at once on the serial path (the next
    # actions are there), after all forwards on the parallel one (they come from the second
    # thread meanwhile). The same ops either way.
    y = target() if isinstance(boot, _Ready) else None
    qs, waiting, terms = [], [], []
    for j in range(len(nets.critic_layers)):
        out, saved = _forward(nets, j, feat_value, action, fast)
        qs.append(out)
        if y is not None:
            backward(j, saved, out, y)
        else:
            waiting.append(saved)
    if y is None:
        y = target()
        for j, saved in enumerate(waiting):
            backward(j, saved, qs[j], y)
    if fast:
        critic_loss = torch.tensor(0.5 * sum(mse for mse, _ in terms))
        q_mean = torch.tensor(sum(m for _, m in terms) / len(terms))
    else:
        q = torch.stack([out[:, 0] for out in qs])  # (k, B)
        critic_loss = 0.5 * (q - y).square().mean(-1).sum()
        q_mean = q.mean()
    info = {"stats/q": q_mean, "stats/alpha": torch.as_tensor(alpha)}
    params = [*nets.critic_w, *nets.critic_b]
    into = feat if feat_grad is not None else None
    return {"loss_rl_critic": (critic_loss, params, [*w_grads, *b_grads], into, feat_grad)}, info


def _critic_backward(
    nets: Nets,
    j: int,
    acts: list[torch.Tensor],
    grad_q: torch.Tensor,
    w_grads: list[torch.Tensor],
    b_grads: list[torch.Tensor],
    feat_grad: torch.Tensor | None,
) -> None:
    """Critic ``j``'s weight and bias gradients (written into its slices of the stacked
    ``w_grads``, ``b_grads``) from ``grad_q = dL/dQ_j (B,)``, and the features' gradient
    added to ``feat_grad`` (where they have a graph), by PyTorch ops."""
    n, dim = len(nets.critic_w), feat_grad.shape[1] if feat_grad is not None else 0
    layers = nets.critic_layers[j]
    g = grad_q[:, None]
    for i in reversed(range(n)):
        if i < n - 1:  # through the ReLU, in place
            kernels._relu_backward(g, acts[i + 1], out=g)
        torch.sum(g, 0, keepdim=True, out=b_grads[i][j])
        torch.mm(acts[i].t(), g, out=w_grads[i][j])
        if i > 0:
            g = _input_grad(g, layers[i][0])
        elif feat_grad is not None:
            feat_grad.addmm_(g, layers[0][0][:dim].t())


def _actor_part(
    nets: Nets,
    feat: torch.Tensor,
    eps: torch.Tensor,
    alpha: float,
    log_alpha: torch.Tensor | None,
    target_entropy: float,
    fast: bool,
) -> tuple[dict[str, Part], dict[str, torch.Tensor]]:
    """The actor's loss ``mean(alpha log pi - min_j Q_j(s, a~))`` through ``a~ = tanh(u)``
    with the critics as constants, and the entropy coefficient's, with their gradients."""
    rows, dim = feat.shape
    out_pi, saved_pi = _forward(nets, None, feat, None, fast)
    pi_action, log_prob, std, raw = _sample(out_pi, eps, nets)
    critics = [_forward(nets, j, feat, pi_action, fast) for j in range(len(nets.critic_layers))]
    # The min's gradient -1/B goes to the critic that is the minimum in each row (where
    # autograd's min sends it): each critic back-propagates only its own rows (half the rows
    # of two critics)
    if fast:  # the loss, each critic's rows and the mean log-probability in one C pass
        loss, picked, mean_log_prob = native.sac_actor_loss(
            [out for out, _ in critics], log_prob, alpha
        )
        actor_loss, log_prob_mean = torch.tensor(loss), torch.tensor(mean_log_prob)
        slope = torch.full((rows, 1), -1.0 / rows, dtype=feat.dtype)
    else:
        q_pi, which = torch.stack([out[:, 0] for out, _ in critics]).min(0)
        actor_loss, log_prob_mean = (alpha * log_prob - q_pi).mean(), log_prob.mean()
        picked = [(which == j).nonzero()[:, 0] for j in range(len(critics))]
    n = len(nets.critic_w)
    grad_a = torch.zeros_like(pi_action)
    for j, (_, saved) in enumerate(critics):
        sel = picked[j]
        if fast:  # one C call, the rows picked inside it: the action columns' gradient
            nets.critic_mlps[j].backward(  # type: ignore[index]
                saved, slope[: sel.shape[0]], feat, pi_action, sel, dx=grad_a, kfrom=dim
            )
            continue
        g = torch.full((sel.shape[0], 1), -1.0 / rows, dtype=feat.dtype)
        layers = nets.critic_layers[j]
        for i in reversed(range(n)):
            if i < n - 1:
                kernels._relu_backward(g, saved[i + 1].index_select(0, sel), out=g)
            if i > 0:
                g = _input_grad(g, layers[i][0])
            else:
                grad_a.index_add_(0, sel, g @ layers[0][0][dim:].t())
    m = len(nets.actor_w)
    if fast:  # the sample's backward, then the actor's in one C call each
        g = native.squashed_gaussian_backward(
            grad_a, pi_action, std, eps, out_pi, nets.log_std_min, nets.log_std_max, alpha / rows
        )
        w_grads = [torch.empty_like(w) for w in nets.actor_w]
        b_grads = [torch.empty_like(b) for b in nets.actor_b]
        nets.actor_mlp.backward(  # type: ignore[union-attr]
            saved_pi, g, feat, dw=native.addresses(w_grads), db=native.addresses(b_grads)
        )
    else:
        grad_u = grad_a.mul_(1.0 - pi_action.square()).add_(pi_action, alpha=2.0 * alpha / rows)
        in_clamp = (raw >= nets.log_std_min) & (raw <= nets.log_std_max)
        grad_log_std = (grad_u * std * eps).sub_(alpha / rows).mul_(in_clamp)
        g = torch.cat([grad_u, grad_log_std], dim=-1)
        w_grads = [g] * m
        b_grads = [g] * m
        for i in reversed(range(m)):
            if i < m - 1:
                kernels._relu_backward(g, saved_pi[i + 1], out=g)
            # the narrow first layer's (3 -> 256) comes as a transposed view (MKL's faster
            # layout, ~150 us less): copied once (3 KiB), as fused_td does
            w_grads[i] = kernels._mlp_weight_grad(g, saved_pi[i], False, False).contiguous()
            b_grads[i] = g.sum(0)
            if i > 0:
                g = torch.mm(g, nets.actor_w[i])
    params = [*nets.actor_w, *nets.actor_b]
    parts = {"loss_rl_actor": (actor_loss, params, [*w_grads, *b_grads], None, None)}
    info = {"stats/entropy": -log_prob_mean}
    if log_alpha is not None:
        gap = log_prob_mean + target_entropy
        parts["loss_rl_alpha"] = (-log_alpha.detach() * gap, [log_alpha], [-gap], None, None)
    return parts, info
