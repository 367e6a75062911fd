"""Train the reader that ships: the question tower (rag.answer.reader.QuestionTower).

Only the question side of all-MiniLM-L6-v2 learns; sentences keep the vectors ingest
stores. Data: SQuAD 2.0's train articles and, with ``union``, the train split of the
questions we wrote over other unions' documents (``questions.load_union``). The designs
that were measured against it and lost are in docs/reader.md.
"""
from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .questions import QAItem, article_idf, group_by_article, load_squad
from .splits import HELDOUT, half, squad_split, union_split

if TYPE_CHECKING:
    import numpy as np

TOWER_SCALE = 20.0  # cosine -> logit: a softmax over cosines needs a temperature


@dataclass(frozen=True)
class TrainReport:
    examples: int  # questions
    positives: int  # answer sentences among their candidates
    seconds: float
    out_dir: Path


def tower_candidates(item: QAItem, by_article: dict[str, list[QAItem]], rng: random.Random,
                     distractors: int = 4) -> tuple[list[str], list[bool]]:
    """A question's candidates, as retrieval hands them over: every sentence of its paragraph,
    and a few from other paragraphs of the same article (the same topic, not the answer)."""
    sentences = list(item.sentences)
    labels = [i in item.positives for i in range(len(sentences))]
    others = [o for o in by_article[item.article] if o.paragraph != item.paragraph]
    for _ in range(distractors if others else 0):
        other = rng.choice(others)
        sentences.append(other.sentences[rng.randrange(len(other.sentences))])
        labels.append(False)
    return sentences, labels


def train_tower(squad_path: Path, out_dir: Path, *, base_model: str = "bundled", seed: int = 13,
                epochs: int = 5, train_layers: int = 6, lr: float = 5e-5, batch_size: int = 32,
                distractors: int = 4, max_questions: int | None = None, union: list[QAItem] | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Fine-tune the question side of MiniLM on the train articles; sentences keep the base
    model's vectors (the ones ingest stores), so only questions are encoded with gradients.

    Each question's loss is a softmax over its candidates, the other questions' candidates
    in the batch (other articles only) and a "none of these" logit read off the question
    vector: an answerable question must pick a sentence holding its answer, an
    unanswerable one must pick none (SQuAD 2.0's no-answer, as its span readers learn it).
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    from ..answer.reader import TOWER_FILE, TOWER_FORMAT
    from ..ingest.embedding import resolve_model

    if batch_size <= 0 or epochs <= 0 or train_layers <= 0:
        raise ValueError(f"batch_size, epochs and train_layers must be > 0, got {batch_size}, {epochs}, {train_layers}")
    hf_logging.set_verbosity_error()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    items = load_squad(squad_path)
    train = [it for it in items if squad_split(it.article) == "train"]
    if max_questions is not None:
        train = rng.sample(train, min(max_questions, len(train)))
    written = [it for it in union or () if union_split(it.article) == "train"]
    train += written  # members' wording over union documents, beside SQuAD's
    by_article = group_by_article(items + written)
    if not train:
        raise ValueError(f"no training questions from {squad_path}")
    examples = [(it, *tower_candidates(it, by_article, rng, distractors)) for it in train]
    model = SentenceTransformer(resolve_model(base_model), device="cpu")
    texts = sorted({s for _, sents, _ in examples for s in sents})
    frozen = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_tensor=True)
    row = {t: i for i, t in enumerate(texts)}
    bert = model[0].auto_model
    layers = bert.encoder.layer
    trained = layers[max(0, len(layers) - train_layers):]
    bert.requires_grad_(False)
    for layer in trained:
        layer.requires_grad_(True)
    null = torch.nn.Linear(model.get_embedding_dimension(), 1)
    body = [p for p in bert.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": null.parameters(), "lr": 1e-2}])
    model.train()
    steps = epochs * math.ceil(len(examples) / batch_size)

    def loss_of(batch):
        features = model.preprocess([it.question for it, _, _ in batch])
        questions = torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=1)
        own = [frozen[[row[s] for s in sents]] for _, sents, _ in batch]
        loss = questions.new_zeros(())
        for k, (it, _, labels) in enumerate(batch):
            negatives = [own[j] for j, (o, _, _) in enumerate(batch) if o.article != it.article]
            candidates = torch.cat([own[k], *negatives])
            logits = torch.cat([TOWER_SCALE * (candidates @ questions[k]), null(questions[k])])
            target = torch.zeros(len(logits), dtype=torch.bool)
            if any(labels):
                target[:len(labels)] = torch.tensor(labels)
            else:
                target[-1] = True
            loss = loss + torch.logsumexp(logits, 0) - torch.logsumexp(logits[target], 0)
        return loss / len(batch)

    started = time.perf_counter()
    step = 0
    for _ in range(epochs):
        rng.shuffle(examples)
        for i in range(0, len(examples), batch_size):
            loss = loss_of(examples[i:i + batch_size])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if progress:
                progress(step, steps, loss.item())
    seconds = time.perf_counter() - started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = len(layers) - len(trained)
    state = {k: v.half().contiguous() for k, v in bert.state_dict().items()
             if k.startswith("encoder.layer.") and int(k.split(".")[2]) >= first}
    state.update({f"null.{k}": v.detach().half().contiguous() for k, v in null.state_dict().items()})
    save_file(state, str(out_dir / TOWER_FILE))
    meta = {"format": TOWER_FORMAT, "base_model": base_model, "scale": TOWER_SCALE, "seed": seed,
            "questions": len(train), "answerable": sum(it.answerable for it in train),
            "union_questions": len(written),
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "train_layers": len(trained),
            "distractors": distractors, "train_seconds": round(seconds, 1),
            "calibration": {"features": ["margin"], "weights": [1.0], "bias": 0.0}}
    (out_dir / "reader.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    positives = sum(sum(labels) for _, _, labels in examples)
    return TrainReport(len(examples), positives, seconds, out_dir)


def tower_records(tower, embed: Callable[[list[str]], "np.ndarray"], items: list[QAItem],
                  by_article: dict[str, list[QAItem]], seed: int = 13, distractors: int = 4) -> list[dict]:
    """Per question: its candidates' features (the answerer's) and labels, for fitting and scoring.
    ``embed`` gives the base model's unit vectors, as ingest stores them."""
    import numpy as np

    from ..answer.answering import first_stage_features

    rng = random.Random(seed)
    idf = article_idf(o for its in by_article.values() for o in its)
    out = []
    for it in items:
        sentences, labels = tower_candidates(it, by_article, rng, distractors)
        view = tower.view(it.question)
        out.append({"item": it, "sentences": sentences, "labels": np.array(labels), "view": view})
    texts = sorted({s for r in out for s in r["sentences"]})
    base = dict(zip(texts, embed(texts)))
    for r in out:
        cos = np.stack([base[s] for s in r["sentences"]]) @ r["view"].vector
        cov, typed = first_stage_features(r["item"].question, r["sentences"], *idf[r["item"].article])
        r.update(cosine=cos, coverage=cov, type_ok=typed.astype(float))
    return out


def calibrate_tower(model_dir: Path, squad_path: Path, *, seed: int = 13, limit: int | None = None) -> dict:
    """Fit the tower's probability (a logistic regression over its margin and the answerer's
    cosine, term coverage and answer type) on the 'calib' half of the held-out SQuAD articles;
    every candidate of every question is a row, labelled by whether it holds the answer."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ..answer.reader import TOWER_FEATURES, QuestionTower, save_calibration
    from ..ingest.embedding import embed_all, load_embedder

    tower = QuestionTower(Path(model_dir))
    embedder = load_embedder(tower.base_model)
    items = load_squad(squad_path)
    by_article = group_by_article(items)
    calib = [it for it in items if squad_split(it.article) == HELDOUT and half(it.qid) == "calib"]
    if limit is not None:
        calib = random.Random(seed).sample(calib, min(limit, len(calib)))
    records = tower_records(tower, lambda texts: embed_all(embedder, texts), calib, by_article, seed)
    x, y = [], []
    for r in records:
        margin = tower.scale * r["cosine"] - r["view"].null
        columns = {"cosine": r["cosine"], "coverage": r["coverage"], "type_ok": r["type_ok"], "margin": margin}
        x += np.stack([columns[f] for f in TOWER_FEATURES], axis=1).tolist()
        y += r["labels"].tolist()
    if len(set(y)) < 2:
        raise ValueError("calibration needs both answer and non-answer sentences")
    fit = LogisticRegression(C=1.0, max_iter=1000).fit(np.array(x), np.array(y))
    weights, bias = [float(w) for w in fit.coef_[0]], float(fit.intercept_[0])
    note = f"logistic regression on {len(records)} held-out SQuAD questions (calib half), {len(y)} candidates"
    save_calibration(model_dir, TOWER_FEATURES, weights, bias, fit_on=note)
    return {"weights": weights, "bias": bias, "questions": len(records), "sentences": len(y)}


def cross_groups(items: list[QAItem], by_article: dict[str, list[QAItem]], rng: random.Random, *,
                 size: int = 8, hard: int = 5, distractors: int = 4) -> list[tuple[str, list[str], int]]:
    """Per question, what the cross-encoder reads at once: one answer sentence (for an
    unanswerable question none) among ``size`` candidates, and the index of the answer + 1
    (0: "none of these"). The negatives are first the window's sentences sharing the most
    rare words with the question (the near misses the heuristic would quote, the written
    traps among them), then random others of the window and of other documents."""
    from ..answer.answering import first_stage_features

    idf = article_idf(o for its in by_article.values() for o in its)
    out = []
    for it in items:
        sentences, labels = tower_candidates(it, by_article, rng, distractors)
        coverage, _ = first_stage_features(it.question, sentences, *idf[it.article])
        negatives = sorted((i for i, y in enumerate(labels) if not y), key=lambda i: -coverage[i])
        rest = negatives[hard:]
        rng.shuffle(rest)
        picked = negatives[:hard] + rest
        answers = [i for i, y in enumerate(labels) if y]
        chosen = [sentences[i] for i in picked[:size - (1 if answers else 0)]]
        target = 0
        if answers:
            at = rng.randrange(len(chosen) + 1)
            chosen.insert(at, sentences[rng.choice(answers)])
            target = at + 1
        out.append((it.question, chosen, target))
    return out


def train_cross(out_dir: Path, union: list[QAItem], *, base_model: str = "bundled", seed: int = 13,
                epochs: int = 2, lr: float = 4e-5, questions_per_step: int = 4, size: int = 8,
                max_tokens: int = 128, max_questions: int | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Fine-tune all of MiniLM as a cross-encoder on the written union questions' train split:
    it reads the question with one candidate sentence, and a softmax over its candidates'
    scores and a learned "none of these" score must pick the answer sentence, or none."""
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    per_epoch = [cross_groups(written, by_article, random.Random(seed + e), size=size) for e in range(epochs)]
    steps = sum(math.ceil(len(g) / questions_per_step) for g in per_epoch)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps))
    model.train()
    started = time.perf_counter()
    step = 0
    for e, groups in enumerate(per_epoch):
        random.Random(seed * 7 + e).shuffle(groups)
        for i in range(0, len(groups), questions_per_step):
            batch = groups[i:i + questions_per_step]
            scores = model.read(model.pairs([q for q, sents, _ in batch for _ in sents],
                                            [s for _, sents, _ in batch for s in sents], max_tokens))
            loss, at = scores.new_zeros(()), 0
            for _, sents, target in batch:
                logits = torch.cat([model.null, scores[at:at + len(sents)]])
                at += len(sents)
                loss = loss + torch.nn.functional.cross_entropy(logits[None], torch.tensor([target]))
            loss = loss / len(batch)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            if progress:
                progress(step, steps, loss.item())
    seconds = time.perf_counter() - started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(out_dir / CROSS_FILE))
    meta = {"format": CROSS_FORMAT, "base_model": base_model, "seed": seed, "questions": len(written),
            "answerable": sum(it.answerable for it in written), "epochs": epochs, "lr": lr,
            "questions_per_step": questions_per_step, "candidates_per_question": size,
            "max_tokens": max_tokens, "train_seconds": round(seconds, 1)}
    (out_dir / "reader.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return TrainReport(len(written), sum(it.answerable for it in written), seconds, out_dir)
