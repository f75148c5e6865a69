"""Run by ``tests/test_gradproj.py`` under ``torchrun --nproc_per_node=2`` (gloo, CPU).

Every rank builds the same small model (backbone shared by an RL head and an auxiliary head),
computes its losses on its own data, so its local gradients differ from the other rank's, and
calls :func:`reprl.optim.gradproj.projected_backward`. It saves its local gradients, the
resulting ``p.grad`` and the logged statistics to ``<out_dir>/rank<r>.pt`` for the test to
compare across ranks and against a single-process reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from reprl import dist
from reprl.optim.gradproj import projected_backward, rl_and_aux_gradients


def main(out_dir: Path) -> None:
    dist.init("cpu")
    rank = dist.rank()
    torch.manual_seed(0)  # the same model on every rank
    backbone = nn.Linear(6, 5)
    rl_head = nn.Linear(5, 1)
    aux_head = nn.Linear(5, 3)
    shared = list(backbone.parameters())
    params = [*shared, *rl_head.parameters(), *aux_head.parameters()]

    torch.manual_seed(100 + rank)  # each rank its own data, hence its own local gradients
    x = torch.randn(16, 6)
    h = torch.tanh(backbone(x))
    rl_loss = rl_head(h).square().mean()
    # An auxiliary loss pulling against the RL loss on the backbone, so projection fires.
    aux_loss = aux_head(h).square().mean() - 2.0 * h.sum(-1).mean() * (1 + rank)
    aux_loss = aux_loss - 3.0 * rl_loss

    local_rl, local_aux = rl_and_aux_gradients(rl_loss, aux_loss, params, retain_graph=True)
    info = projected_backward(rl_loss, aux_loss, params, shared)
    torch.save(
        {
            "local_rl": local_rl,
            "local_aux": local_aux,
            "grads": [p.grad for p in params],
            "num_shared": len(shared),
            "info": info,
            "world_size": dist.world_size(),
        },
        out_dir / f"rank{rank}.pt",
    )
    dist.cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
