"""Train the crisis screen's second look: ``rag train-crisis --reread`` writes models/crisis/reread/.

All of all-MiniLM-L6-v2 is fine-tuned end to end as a 3-way classifier (rag.answer.crisis_reread)
on exactly the head's data (``dataset()`` of rag.train.crisis: the train halves only). Its
thresholds come from 3-fold out-of-fold scores (folds grouped by message, so a message and its
augmented copies never straddle a fold) under the head's own budgets on the ``none`` messages
(``rag.train.crisis.pick_thresholds``). Seeded; on the same machine the same data gives the same
weights.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .crisis import (MAX_CRISIS_FP_OTHER, MAX_CRISIS_FP_QUESTIONS, MAX_FLAG_FP_QUESTIONS, SEED, data_sha256,
                     dataset, pick_thresholds, report)
from .finetune import Finetuner

# The grey zone the second look reads, as a share of the head's concern threshold: the line
# below which a message's distress is too faint even to keep it from being stored
# (safety.STORE_DISTRESS_SHARE). Chosen on the training data's out-of-fold scores (head and
# second look both): reading only what the head flags (1.0) flagged fewer crisis messages than
# the head alone (0.918 against 0.924), 0.25 more of the other "none" ones (docs/crisis-screen.md).
ZONE = 0.5
# A crisis the head heard is lowered to a resources line only below the P(crisis) that this
# share of the crisis messages scored out of fold: the second look must be sure.
KEEP_LOSS = 0.01


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of texts of like length (little padding), in a shuffled order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 16
    out = []
    for i in range(0, len(order), pool):
        chunk = sorted(order[i:i + pool], key=lambda j: lengths[j])
        out += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def fit(texts: list[str], y: np.ndarray, *, seed: int = SEED, epochs: int = 2, lr: float = 5e-5,
        batch_size: int = 32, base_model: str = "bundled",
        progress: Callable[[int, int, float], None] | None = None):
    """A CrisisClassifier fine-tuned on ``texts``: seeded AdamW, 10% warm-up, then linear decay
    (the schedule of rag.train.reader.train_cross)."""
    import torch

    from ..answer.crisis_reread import CrisisClassifier

    if epochs <= 0 or batch_size <= 0 or not texts:
        raise ValueError(f"need texts, epochs > 0 and batch_size > 0; got {len(texts)} texts, {epochs}, {batch_size}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = CrisisClassifier.from_base(base_model)
    lengths = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    plan = [length_batches(lengths, batch_size, random.Random(seed + e)) for e in range(epochs)]
    tuner = Finetuner(model, lr=lr, steps=sum(len(p) for p in plan), progress=progress)
    labels = torch.tensor(np.asarray(y), dtype=torch.long)
    model.train()
    for batches in plan:
        for batch in batches:
            tokens = model.tokens([texts[j] for j in batch])
            tuner.step(torch.nn.functional.cross_entropy(model.read(tokens), labels[batch]))
    model.eval()
    return model


def probabilities(model, texts: list[str]) -> np.ndarray:
    """Rows of P(none), P(concern), P(crisis) as the runtime reads them."""
    from ..answer.crisis_reread import read

    readings = read(model.tokenizer, model.scores, texts)
    if any(r is None for r in readings):
        raise ValueError("a training text is longer than the second look reads (MAX_TOKENS)")
    crisis = np.array([r.crisis for r in readings])
    distress = np.array([r.distress for r in readings])
    return np.stack([1 - distress, distress - crisis, crisis], axis=1)


def out_of_fold(texts: list[str], y: np.ndarray, groups: np.ndarray, folds: int, log: Callable[[str], None],
                **kwargs) -> np.ndarray:
    from sklearn.model_selection import GroupKFold

    probs = np.zeros((len(y), 3))
    for k, (train, test) in enumerate(GroupKFold(n_splits=folds).split(texts, y, groups)):
        started = time.perf_counter()
        model = fit([texts[i] for i in train], y[train], **kwargs)
        probs[test] = probabilities(model, [texts[i] for i in test])
        log(f"fold {k + 1}/{folds}: {time.perf_counter() - started:.0f} s")
    return probs


def train_reread(out_dir: Path, *, folds: int = 3, epochs: int = 2, lr: float = 5e-5, batch_size: int = 32,
                 max_texts: int | None = None, oof: Path | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Cross-validate for the thresholds, fit on everything, write the weights (fp16) and reread.json."""
    import torch

    # One thread: on this shared 2-core machine two OpenMP threads took 7 s a step against
    # 0.6 s for one (each waits on the other when a core is busy), and a fixed count keeps
    # the arithmetic, so the weights, the same from run to run.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(out_dir, folds=folds, epochs=epochs, lr=lr, batch_size=batch_size, max_texts=max_texts,
                      oof=oof, log=log)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, *, folds: int, epochs: int, lr: float, batch_size: int, max_texts: int | None,
           oof: Path | None, log: Callable[[str], None]) -> dict:
    from safetensors.torch import save_file

    from ..answer.crisis_reread import REREAD_FILE, REREAD_FORMAT, REREAD_META

    started = time.perf_counter()
    texts, y, groups, questions, counts = dataset(random.Random(SEED))
    if max_texts is not None:  # a seeded sample, for a quick check of the whole path
        keep = sorted(random.Random(SEED).sample(range(len(texts)), min(max_texts, len(texts))))
        texts, y, groups, questions = [texts[i] for i in keep], y[keep], groups[keep], questions[keep]
    log(f"{len(texts)} training texts: {counts}")
    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": SEED}
    probs = out_of_fold(texts, y, groups, folds, log, **settings)
    if oof is not None:
        np.savez(oof, probs=probs, y=y, questions=questions, texts=np.array(texts))
    t_crisis, t_flag = pick_thresholds(probs, y, questions)
    t_keep = float(np.quantile(probs[y == 2, 2], KEEP_LOSS))
    cv = {"thresholds": [round(t_crisis, 4), round(t_flag, 4)], **report(probs, y, questions, t_crisis, t_flag)}
    log(f"{folds}-fold: {cv}")
    fit_started = time.perf_counter()
    model = fit(texts, y, progress=_every(50, log), **settings)
    fit_seconds = time.perf_counter() - fit_started
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().half().contiguous() for k, v in model.state_dict().items()}, str(out_dir / REREAD_FILE))
    meta = {"format": REREAD_FORMAT, "base_model": "bundled", "labels": ["none", "concern", "crisis"],
            "crisis_threshold": round(t_crisis, 4), "concern_threshold": round(t_flag, 4),
            "keep_threshold": round(t_keep, 4), "zone": ZONE, **settings,
            "folds": folds, "texts": len(texts), "counts": counts,
            "data_sha256": data_sha256(),
            "keep_loss": KEEP_LOSS,
            "budgets": {"crisis_on_questions": MAX_CRISIS_FP_QUESTIONS, "crisis_on_other_none": MAX_CRISIS_FP_OTHER,
                        "flagged_questions": MAX_FLAG_FP_QUESTIONS},
            "cross_validation": cv, "fit_seconds": round(fit_seconds), "seconds": round(time.perf_counter() - started)}
    (out_dir / REREAD_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    size = (out_dir / REREAD_FILE).stat().st_size / 1e6
    log(f"wrote {out_dir} ({size:.1f} MB) in {meta['seconds']} s")
    return meta


def _every(n: int, log: Callable[[str], None]) -> Callable[[int, int, float], None]:
    def progress(step: int, steps: int, loss: float) -> None:
        if step % n == 0 or step == steps:
            log(f"step {step}/{steps} loss {loss:.3f}")
    return progress


