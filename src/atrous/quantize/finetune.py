"""A short fine-tuning loop for compressed models (after pruning, or with fake quantization).

Deliberately small: cross-entropy on (image, label) batches at a low learning rate for a fixed
number of steps. Full training with schedules and checkpoints is ``atrous train``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from atrous.data.transforms import Normalize, TransformedDataset, train_transform

__all__ = ["finetune", "dataset_batches"]


def finetune(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    lr: float = 1e-3,
    ignore_index: int = 255,
    progress: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Train ``model`` for ``steps`` batches (cycling ``batches``) with Adam; returns it in eval.

    BatchNorm layers stay in eval mode: fine-tuning batches are small and the running statistics
    of the trained model are better than a few noisy batch estimates.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    for step, (x, y) in enumerate(itertools.islice(_repeat(batches), steps)):
        out = model(x)
        logits = out["out"] if isinstance(out, dict) else out
        loss = F.cross_entropy(logits, y.long(), ignore_index=ignore_index)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step, float(loss))
    return model.eval()


def _repeat(batches: Iterable[tuple[torch.Tensor, torch.Tensor]]):
    """Iterate ``batches`` again and again (re-shuffling loaders; nothing is cached)."""
    while True:
        empty = True
        for item in batches:
            empty = False
            yield item
        if empty:
            return


def dataset_batches(
    dataset,
    card,
    *,
    batch_size: int = 8,
    crop: int = 257,
    seed: int = 0,
    scale_range: tuple[float, float] = (0.5, 2.0),
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented, normalised training batches from a project dataset, per the card's contract.

    Pass the model's own training ``crop`` and ``scale_range``: fine-tuning on another
    distribution moves the model away from the one it was trained (and is evaluated) on.
    """
    data = TransformedDataset(
        dataset, train_transform(crop, scale_range), Normalize(card.preprocessing)
    )
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        data, batch_size=batch_size, shuffle=True, drop_last=True, generator=gen
    )
