"""Train the reader that ships: the cross-encoder (rag.answer.cross.CrossReader), all of
all-MiniLM-L6-v2 fine-tuned on the train split of the questions we wrote over other unions'
documents (``questions.load_union``). The designs measured against it, and why they lost, are
in docs/reader.md.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .finetune import Finetuner
from .questions import QAItem, article_idf, group_by_article
from .splits import union_split


@dataclass(frozen=True)
class TrainReport:
    examples: int  # questions
    positives: int  # answer sentences among their candidates
    seconds: float
    out_dir: Path


def window_candidates(item: QAItem, by_article: dict[str, list[QAItem]], rng: random.Random,
                      distractors: int = 4) -> tuple[list[str], list[bool], list[str]]:
    """A question's candidates, as retrieval hands them over: every sentence of its window (a
    SQuAD question's paragraph), and a few from other windows of the same document (the same
    topic, not the answer); with each, its label and its context ("" where the item has none)."""
    sentences = list(item.sentences)
    labels = [i in item.positives for i in range(len(sentences))]
    contexts = list(item.contexts) or [""] * len(sentences)
    others = [o for o in by_article[item.article] if o.paragraph != item.paragraph]
    for _ in range(distractors if others else 0):
        other = rng.choice(others)
        at = rng.randrange(len(other.sentences))
        sentences.append(other.sentences[at])
        labels.append(False)
        contexts.append(other.contexts[at] if other.contexts else "")
    return sentences, labels, contexts


def cross_groups(items: list[QAItem], by_article: dict[str, list[QAItem]], rng: random.Random, *,
                 size: int = 8, hard: int = 5, distractors: int = 4) -> list[tuple[str, list[str], list[str], int]]:
    """Per question, what the cross-encoder reads at once: one answer sentence (for an
    unanswerable question none) among ``size`` candidates, their contexts, and the index of the
    answer + 1 (0: "none of these"). The negatives are first the window's sentences sharing the most
    rare words with the question (the near misses the heuristic would quote, the written
    traps among them), then random others of the window and of other documents."""
    from ..answer.answering import first_stage_features

    idf = article_idf(o for its in by_article.values() for o in its)
    out = []
    for it in items:
        sentences, labels, contexts = window_candidates(it, by_article, rng, distractors)
        coverage, _ = first_stage_features(it.question, sentences, *idf[it.article])
        negatives = sorted((i for i, y in enumerate(labels) if not y), key=lambda i: -coverage[i])
        rest = negatives[hard:]
        rng.shuffle(rest)
        picked = negatives[:hard] + rest
        answers = [i for i, y in enumerate(labels) if y]
        chosen = picked[:size - (1 if answers else 0)]
        target = 0
        if answers:
            at = rng.randrange(len(chosen) + 1)
            chosen.insert(at, rng.choice(answers))
            target = at + 1
        out.append((it.question, [sentences[i] for i in chosen], [contexts[i] for i in chosen], target))
    return out


def train_cross(out_dir: Path, union: list[QAItem], *, base_model: str = "bundled", seed: int = 13,
                epochs: int = 2, lr: float = 4e-5, questions_per_step: int = 4, size: int = 8,
                max_tokens: int = 128, max_questions: int | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Fine-tune all of MiniLM as a cross-encoder on the written union questions' train split:
    it reads the question with one candidate sentence, and a softmax over its candidates'
    scores and a learned "none of these" score must pick the answer sentence, or none. It reads
    each sentence with where it sits (answering.reading_context): reading the sentence alone
    lost (docs/reader.md)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers.utils import logging as hf_logging

    from ..answer.cross import CROSS_FILE, CROSS_FORMAT, CrossModel

    if epochs <= 0 or questions_per_step <= 0 or size < 2:
        raise ValueError(f"epochs and questions_per_step must be > 0 and size >= 2, got {epochs}, "
                         f"{questions_per_step}, {size}")
    hf_logging.set_verbosity_error()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    written = [it for it in union if union_split(it.article) == "train"]
    if not written:
        raise ValueError("no written union questions in the train split")
    if max_questions is not None:
        written = random.Random(seed).sample(written, min(max_questions, len(written)))
    by_article = group_by_article(written)
    model = CrossModel.from_base(base_model)
    per_epoch = [cross_groups(written, by_article, random.Random(seed + e), size=size) for e in range(epochs)]
    tuner = Finetuner(model, lr=lr, steps=sum(math.ceil(len(g) / questions_per_step) for g in per_epoch),
                      progress=progress)
    model.train()
    started = time.perf_counter()
    for e, groups in enumerate(per_epoch):
        random.Random(seed * 7 + e).shuffle(groups)
        for i in range(0, len(groups), questions_per_step):
            batch = groups[i:i + questions_per_step]
            scores = model.read(model.pairs([q for q, sents, _, _ in batch for _ in sents],
                                            [s for _, sents, _, _ in batch for s in sents], max_tokens,
                                            [c for _, _, ctxs, _ in batch for c in ctxs]))
            loss, at = scores.new_zeros(()), 0
            for _, sents, _, target in batch:
                logits = torch.cat([model.null, scores[at:at + len(sents)]])
                at += len(sents)
                loss = loss + torch.nn.functional.cross_entropy(logits[None], torch.tensor([target]))
            tuner.step(loss / len(batch))
    seconds = time.perf_counter() - started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(out_dir / CROSS_FILE))
    meta = {"format": CROSS_FORMAT, "base_model": base_model, "seed": seed, "questions": len(written),
            "answerable": sum(it.answerable for it in written), "epochs": epochs, "lr": lr,
            "questions_per_step": questions_per_step, "candidates_per_question": size,
            "max_tokens": max_tokens, "reads_context": True, "train_seconds": round(seconds, 1)}
    (out_dir / "reader.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return TrainReport(len(written), sum(it.answerable for it in written), seconds, out_dir)
