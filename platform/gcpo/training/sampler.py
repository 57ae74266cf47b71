"""The data sampler: which training items each step uses, resumable exactly from one integer.

Epoch e visits the items in the order of a permutation seeded by (seed, e); `position` counts the prompts
handed out so far, so a checkpoint stores just `position` and a resumed run gets the very same next prompts.
"""

from __future__ import annotations

import torch


class PromptSampler:
    def __init__(self, num_items: int, seed: int, position: int = 0):
        if num_items < 1:
            raise ValueError("the training split is empty")
        self.num_items = num_items
        self.seed = seed
        self.position = position

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=gen)

    def take(self, count: int) -> list[int]:
        """The next `count` item indices (crossing epoch boundaries as needed)."""
        out: list[int] = []
        while len(out) < count:
            epoch, offset = divmod(self.position, self.num_items)
            chunk = self._permutation(epoch)[offset : offset + count - len(out)].tolist()
            out.extend(chunk)
            self.position += len(chunk)
        return out
