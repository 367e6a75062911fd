"""Fine-tuning all of MiniLM: the one optimiser and schedule the reader (rag.train.reader) and the
crisis screen's second look (rag.train.crisis_reread) both train with."""
from __future__ import annotations

from collections.abc import Callable


class Finetuner:
    """AdamW (weight decay 0.01) with a linear warm-up over the first 10% of ``steps`` and a
    linear decay to 0 after; each step's gradients clipped to norm 1. The order of the calls in
    ``step`` is part of what makes a seeded training give the same bytes again."""

    def __init__(self, model, *, lr: float, steps: int,
                 progress: Callable[[int, int, float], None] | None = None):
        import torch

        self.model = model
        self.steps = steps
        self.progress = progress
        self.done = 0
        warmup = max(1, steps // 10)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps))

    def step(self, loss) -> None:
        import torch

        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.schedule.step()
        self.done += 1
        if self.progress:
            self.progress(self.done, self.steps, loss.item())
