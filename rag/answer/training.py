"""Train the reader: a MiniLM cross-encoder that says whether a sentence answers a question.

Data is SQuAD 2.0 (the dev half in ../shared/datasets/squad2-dev-half), split by
article so no held-out passage was ever seen in training. Each question gives
pairs (question, sentence with its context): positives are the sentences that
hold an answer span, negatives the other sentences of its paragraph (the
hardest by word overlap, and one at random), one sentence of another paragraph
of the article, and, for unanswerable questions, the paragraph's sentences
closest to the question, which is exactly the trap a reader must not fall in.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..ingest.chunking import split_sentences
from ..ingest.lexical import content_terms
from .reader import FORMAT, candidate_text

HELD_OUT_PERCENT = 25  # of articles, by a stable hash of the title


def shared_data(*parts: str) -> Path:
    """A file under the shared data folder beside the repo (../shared), or beside the
    folder of git worktrees holding it (../../shared); the first that exists."""
    from ..config import ROOT

    candidates = [ROOT.parent / "shared", ROOT.parent.parent / "shared"]
    return next((c.joinpath(*parts) for c in candidates if c.joinpath(*parts).exists()),
                candidates[0].joinpath(*parts))


def default_squad() -> Path:
    return shared_data("datasets", "squad2-dev-half", "dev-v2.0-half.json")


@dataclass(frozen=True)
class QAItem:
    """One question with the sentences of its passage; ``positives`` are indices into them."""

    qid: str
    article: str
    question: str
    heading: str
    sentences: tuple[str, ...]
    positives: frozenset[int]  # empty: the passage does not answer (SQuAD 2.0 "impossible")
    paragraph: int
    answers: tuple[str, ...] = ()  # the answer spans' texts (none for an unanswerable question)
    traps: frozenset[int] = frozenset()  # sentences written down as tempting a wrong answer

    @property
    def answerable(self) -> bool:
        return bool(self.positives)

    def context(self, i: int) -> tuple[str, str]:
        """(previous, next) sentence around sentence i, '' at the passage edges."""
        prev = self.sentences[i - 1] if i > 0 else ""
        nxt = self.sentences[i + 1] if i + 1 < len(self.sentences) else ""
        return prev, nxt

    def text(self, i: int) -> str:
        prev, nxt = self.context(i)
        return candidate_text(self.sentences[i], self.heading, prev, nxt)


@dataclass(frozen=True)
class Pair:
    question: str
    text: str
    label: float


def split_of(key: str) -> str:
    """'train' or 'heldout', stable across runs and machines (not Python's salted hash)."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 100
    return "heldout" if bucket < HELD_OUT_PERCENT else "train"


def half_of(key: str) -> str:
    """'calib' or 'test': held-out questions are halved, thresholds fit on one half only."""
    return "calib" if int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 2 == 0 else "test"


def load_squad(path: Path) -> list[QAItem]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    items = []
    for article in data:
        heading = article["title"].replace("_", " ")
        for p_no, para in enumerate(article["paragraphs"]):
            context = para["context"]
            spans = split_sentences(context)
            sentences = tuple(context[a:b] for a, b in spans)
            for qa in para["qas"]:
                answers = [] if qa.get("is_impossible") else qa["answers"]
                hit = set()
                for ans in answers:
                    lo, hi = ans["answer_start"], ans["answer_start"] + len(ans["text"])
                    hit.update(i for i, (a, b) in enumerate(spans) if a < hi and lo < b)
                if answers and not hit:
                    continue  # an answer our splitter cannot place: skip, don't mislabel
                items.append(QAItem(qa["id"], article["title"], qa["question"], heading, sentences,
                                    frozenset(hit), p_no, tuple(sorted({a["text"] for a in answers}))))
    return items


# ── Questions we wrote over other unions' documents (training/reader/labels.jsonl) ─────────
UNION_LABELS = Path(__file__).resolve().parent.parent.parent / "training" / "reader" / "labels.jsonl"
UNION_DEV_PERCENT = 20  # of documents, by a stable hash of the path: the written dev split
WINDOW = 12  # sentences around the evidence: about what a question's top chunks hold


def union_split(doc: str) -> str:
    """'train' or 'dev' for a labelled document (all its questions go the same way)."""
    bucket = int(hashlib.sha256(f"reader-dev:{doc}".encode("utf-8")).hexdigest(), 16) % 100
    return "dev" if bucket < UNION_DEV_PERCENT else "train"


def load_union(labels: Path = UNION_LABELS) -> list[QAItem]:
    """The written questions as QAItems: a window of WINDOW sentences of the document around
    the labelled span (placed by a hash, so the answer is not always in the middle); the
    span's sentences are the positives (for an unanswerable question, the traps). A follow-up
    is read as the pipeline reads it, rewritten with its history (conversation.standalone).
    A document whose bytes differ from the label's SHA-256 is an error: its offsets would lie."""
    from ..ingest.loaders import load_file
    from ..ingest.structure import section_path
    from ..types import turns
    from .conversation import standalone

    corpora = shared_data("corpora")
    docs: dict[str, tuple[str, list[tuple[int, int]], tuple]] = {}
    items = []
    for n, line in enumerate(Path(labels).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        doc = row["doc"]
        if doc not in docs:
            path = corpora / doc
            if hashlib.sha256(path.read_bytes()).hexdigest() != row["sha256"]:
                raise ValueError(f"{labels}:{n}: {path} is not the document the label was written on")
            document = load_file(path, doc).document
            docs[doc] = (document.text, split_sentences(document.text), document.headings)
        text, spans, headings = docs[doc]
        hit = [i for i, (a, b) in enumerate(spans) if a < row["end"] and row["start"] < b]
        if not hit:
            raise ValueError(f"{labels}:{n}: offsets {row['start']}-{row['end']} hold no sentence of {doc}")
        size = max(WINDOW, hit[-1] - hit[0] + 1)  # a long span (a PDF's short lines) is kept whole
        shift = int(hashlib.sha256(f"{doc}#{n}".encode()).hexdigest(), 16) % (size - (hit[-1] - hit[0]))
        first = max(0, min(hit[0] - shift, len(spans) - size))
        window = spans[first:first + size]
        inside = frozenset(i - first for i in hit)
        question = standalone(row["question"], turns(row.get("history")))
        items.append(QAItem(f"{doc}#{n}", doc, question, section_path(headings, spans[hit[0]][0]),
                            tuple(text[a:b] for a, b in window), inside if row["answerable"] else frozenset(),
                            first, (row["answer"],) if row["answerable"] else (),
                            traps=frozenset() if row["answerable"] else inside))
    return items


def group_by_article(items: Iterable[QAItem]) -> dict[str, list[QAItem]]:
    """The questions of each article, in order."""
    groups: dict[str, list[QAItem]] = {}
    for it in items:
        groups.setdefault(it.article, []).append(it)
    return groups


def article_idf(items: Iterable[QAItem]) -> dict[str, tuple[dict[str, float], float]]:
    """Per article, the term weights of its paragraphs (``idf_table``), as an index would hold them."""
    from ..ingest.sentences import idf_table

    return {article: idf_table(" ".join(s) for s in {o.paragraph: o.sentences for o in its}.values())
            for article, its in group_by_article(items).items()}


def build_pairs(items: Iterable[QAItem], seed: int = 13) -> list[Pair]:
    """Labelled pairs for training, deterministic for a seed."""
    rng = random.Random(seed)
    items = list(items)
    by_article = group_by_article(items)
    pairs = []
    for it in items:
        q_terms = content_terms(it.question)
        others = [i for i in range(len(it.sentences)) if i not in it.positives]
        others.sort(key=lambda i: (i not in it.traps, -len(q_terms & content_terms(it.sentences[i])), i))
        pairs += [Pair(it.question, it.text(i), 1.0) for i in sorted(it.positives)]
        # The closest-by-words non-answers are the traps; one more at random keeps the
        # model from learning "few shared words means no". Unanswerable questions get
        # more of their paragraph: every sentence there is a trap.
        hard = 2 if it.answerable else 3
        chosen = others[:hard] + rng.sample(others[hard:], min(1, len(others[hard:])))
        pairs += [Pair(it.question, it.text(i), 0.0) for i in chosen]
        elsewhere = [o for o in by_article[it.article] if o.paragraph != it.paragraph]
        if elsewhere:
            other = rng.choice(elsewhere)
            pairs.append(Pair(it.question, other.text(rng.randrange(len(other.sentences))), 0.0))
    rng.shuffle(pairs)
    return pairs


@dataclass(frozen=True)
class TrainReport:
    pairs: int
    positives: int
    seconds: float
    pairs_per_second: float
    out_dir: Path


def train_reader(squad_path: Path, out_dir: Path, *, base_model: str = "bundled", seed: int = 13,
                 max_pairs: int | None = None, epochs: int = 1, batch_size: int = 16,
                 lr: float = 4e-5, max_length: int = 128, train_layers: int = 6,
                 pooling: str = "mean", head_lr: float = 1e-3, precision: str = "auto",
                 union: list[QAItem] | None = None, squad_share: float = 1.0,
                 progress: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Fine-tune MiniLM as a binary cross-encoder on the train articles; save fp16 weights.

    ``max_pairs`` caps the pairs (a seeded sample) so a run fits a time budget;
    only the top ``train_layers`` transformer layers (and the head) learn, which
    halves the backward pass and keeps the lower layers' general English intact.
    """
    import numpy as np
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from ..ingest.embedding import resolve_model, resolve_precision
    from .reader import build_scorer

    if batch_size <= 0 or epochs <= 0:
        raise ValueError(f"batch_size and epochs must be > 0, got {batch_size}, {epochs}")
    hf_logging.set_verbosity_error()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    items = [it for it in load_squad(squad_path) if split_of(it.article) == "train"]
    if squad_share < 1.0:  # a seeded share; all of them in their order otherwise, as before the share existed
        items = random.Random(seed).sample(items, int(len(items) * squad_share))
    pairs = build_pairs(items, seed)
    if max_pairs is not None:
        pairs = pairs[:max_pairs]  # already shuffled with the seed
    if union:  # the written questions' train split: members' wording over union documents
        pairs = pairs + build_pairs([it for it in union if union_split(it.article) == "train"], seed)
        random.Random(seed).shuffle(pairs)
    if not pairs:
        raise ValueError(f"no training pairs from {squad_path}")
    path = resolve_model(base_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = build_scorer(path, pooling)
    layers = model.encoder.encoder.layer
    for module in [model.encoder.embeddings, *layers[:max(0, len(layers) - train_layers)]]:
        module.requires_grad_(False)
    model.train()
    batches = _length_batches(pairs, batch_size, random.Random(seed))
    steps = len(batches) * epochs
    head = list(model.head.parameters())
    body = [p for p in model.encoder.parameters() if p.requires_grad]
    # The head starts from nothing and learns faster than the encoder it sits on.
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    # bfloat16 matrix products where the CPU has them (AMX; resolve_precision): 50.1 pairs/s
    # against 35.4 in float32 on the AMX Xeon here. Weights, optimizer state and loss stay float32.
    precision = resolve_precision(precision)
    reduced = precision == "bfloat16"

    def loss_of(batch: list[Pair]):
        enc = tokenizer([p.question for p in batch], [p.text for p in batch], truncation="only_second",
                        max_length=max_length, padding=True, return_tensors="pt")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=reduced):
            logits = model(**enc)
        return loss_fn(logits.float(), torch.tensor([p.label for p in batch]))

    seconds = _fit(epochs, lambda: batches, loss_of, optimizer, steps, clip=list(model.parameters()),
                   schedule=schedule, progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir)
    tokenizer.save_pretrained(out_dir)
    meta = {"format": FORMAT, "pooling": pooling, "head_lr": head_lr, "max_length": max_length, "seed": seed, "pairs": len(pairs),
            "positives": int(sum(p.label for p in pairs)), "epochs": epochs, "batch_size": batch_size,
            "lr": lr, "train_layers": train_layers, "precision": precision, "train_seconds": round(seconds, 1),
            "union_questions": sum(union_split(it.article) == "train" for it in union or ()), "squad_share": squad_share,
            "calibration": {"features": ["logit"], "weights": [1.0], "bias": 0.0}}
    (out_dir / "reader.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return TrainReport(len(pairs), meta["positives"], seconds, len(pairs) * epochs / seconds, out_dir)


def _fit(epochs: int, epoch_batches: Callable[[], Iterable], loss_of: Callable, optimizer, steps: int, *,
         clip: list | None = None, schedule=None,
         progress: Callable[[int, int, float], None] | None = None) -> float:
    """The loop both readers learn with: per batch, its loss, backward, (clip gradients to norm
    1,) an optimizer step (and a schedule step); ``epoch_batches()`` gives each epoch's batches.
    Returns the seconds it took."""
    import torch

    started = time.perf_counter()
    step = 0
    for _ in range(epochs):
        for batch in epoch_batches():
            loss = loss_of(batch)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(clip, 1.0)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            optimizer.zero_grad()
            step += 1
            if progress:
                progress(step, steps, loss.item())
    return time.perf_counter() - started


def _length_batches(pairs: list[Pair], batch_size: int, rng: random.Random) -> list[list[Pair]]:
    """Batches of similar length (less padding, so less wasted compute), in a seeded random order."""
    size = lambda p: len(p.question) + len(p.text)
    batches = []
    window = batch_size * 50
    for i in range(0, len(pairs), window):
        part = sorted(pairs[i:i + window], key=size)
        batches += [part[j:j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def calibrate_reader(model_dir: Path, squad_path: Path, *, limit: int = 250, seed: int = 13,
                     union: list[QAItem] | None = None) -> dict:
    """Platt-scale the reader's logit on the 'calib' half of the held-out SQuAD questions, or,
    given the written union questions, on the 'calib' half of their dev split.

    Every sentence of each question's paragraph is a candidate; the label is
    whether it holds the answer, so unanswerable questions teach it that a
    plausible-looking sentence is not an answer. Returns what was fit.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from .reader import Reader, save_calibration

    if union:
        items = [it for it in union if union_split(it.article) == "dev" and half_of(it.qid) == "calib"]
        source = "written union questions (dev split, calib half)"
    else:
        items = [it for it in load_squad(squad_path)
                 if split_of(it.article) == "heldout" and half_of(it.qid) == "calib"]
        source = "held-out SQuAD questions (calib half)"
    rng = random.Random(seed)
    items = rng.sample(items, min(limit, len(items)))
    reader = Reader(Path(model_dir))
    x, y = [], []
    for it in items:
        x += list(reader.logits(it.question, [it.text(i) for i in range(len(it.sentences))]))
        y += [i in it.positives for i in range(len(it.sentences))]
    if len(set(y)) < 2:
        raise ValueError("calibration needs both answer and non-answer sentences")
    fit = LogisticRegression(C=1.0, max_iter=1000).fit(np.array(x).reshape(-1, 1), np.array(y))
    w, b = float(fit.coef_[0][0]), float(fit.intercept_[0])
    note = f"Platt scaling on {len(items)} {source}, {len(y)} sentences"
    save_calibration(model_dir, ["logit"], [w], b, fit_on=note)
    return {"weights": [w], "bias": b, "questions": len(items), "sentences": len(y)}


# ── The question tower (rag.answer.reader.QuestionTower) ────────────────────────────
TOWER_SCALE = 20.0  # cosine -> logit: a softmax over cosines needs a temperature


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


def absent_candidates(item: QAItem, by_article: dict[str, list[QAItem]], rng: random.Random,
                      distractors: int = 4) -> tuple[list[str], list[bool]] | None:
    """An answerable question asked where its answer is missing, as a user asks the union's
    documents what they never say: the candidates retrieval would hand over without the
    question's own paragraph (the article's paragraph sharing most words with the question,
    and a few sentences of others), none holding an answer text. None when the article has
    no such paragraph."""
    paragraphs = {o.paragraph: o.sentences for o in by_article[item.article] if o.paragraph != item.paragraph}
    answers = [a.lower() for a in item.answers]
    clean = {p: sents for p, sents in paragraphs.items()
             if not any(a in " ".join(sents).lower() for a in answers)}
    if not clean:
        return None
    terms = content_terms(item.question)
    ranked = sorted(clean, key=lambda p: (-len(terms & content_terms(" ".join(clean[p]))), p))
    sentences = list(clean[ranked[0]])
    rest = ranked[1:]
    for _ in range(distractors if rest else 0):
        other = clean[rng.choice(rest)]
        sentences.append(other[rng.randrange(len(other))])
    return sentences, [False] * len(sentences)


def train_tower(squad_path: Path, out_dir: Path, *, base_model: str = "bundled", seed: int = 13,
                epochs: int = 5, train_layers: int = 6, lr: float = 5e-5, batch_size: int = 32,
                distractors: int = 4, max_questions: int | None = None, absent_share: float = 0.0,
                union: list[QAItem] | None = None,
                progress: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Fine-tune the question side of MiniLM on the train articles; sentences keep the base
    model's vectors (the ones ingest stores), so only questions are encoded with gradients.

    Each question's loss is a softmax over its candidates, the other questions' candidates
    in the batch (other articles only) and a "none of these" logit read off the question
    vector: an answerable question must pick a sentence holding its answer, an
    unanswerable one must pick none (SQuAD 2.0's no-answer, as its span readers learn it).
    With ``absent_share`` > 0, that share of the answerable questions is also asked once
    more without its paragraph (``absent_candidates``) and must pick none there too.
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    from ..ingest.embedding import resolve_model
    from .reader import TOWER_FILE, TOWER_FORMAT

    if batch_size <= 0 or epochs <= 0 or train_layers <= 0:
        raise ValueError(f"batch_size, epochs and train_layers must be > 0, got {batch_size}, {epochs}, {train_layers}")
    if not 0.0 <= absent_share <= 1.0:
        raise ValueError(f"absent_share is a share in [0, 1], got {absent_share}")
    hf_logging.set_verbosity_error()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    items = load_squad(squad_path)
    train = [it for it in items if split_of(it.article) == "train"]
    if max_questions is not None:
        train = rng.sample(train, min(max_questions, len(train)))
    written = [it for it in union or () if union_split(it.article) == "train"]
    train += written  # members' wording over union documents, beside SQuAD's
    by_article = group_by_article(items + written)
    if not train:
        raise ValueError(f"no training questions from {squad_path}")
    examples = [(it, *tower_candidates(it, by_article, rng, distractors)) for it in train]
    # A generator of its own, so the other examples and their order do not depend on the share.
    absent_rng = random.Random(seed + 1)
    asked = [it for it in train if it.answerable and absent_share and absent_rng.random() < absent_share]
    absent = [(it, cands) for it in asked if (cands := absent_candidates(it, by_article, absent_rng, distractors))]
    examples += [(it, *cands) for it, cands in absent]
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

    def epoch_batches():
        rng.shuffle(examples)
        return (examples[i:i + batch_size] for i in range(0, len(examples), batch_size))

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

    seconds = _fit(epochs, epoch_batches, loss_of, optimizer, steps, progress=progress)
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
            "distractors": distractors, "absent_share": absent_share, "absent_examples": len(absent),
            "train_seconds": round(seconds, 1),
            "calibration": {"features": ["margin"], "weights": [1.0], "bias": 0.0}}
    (out_dir / "reader.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    positives = sum(sum(labels) for _, _, labels in examples)
    return TrainReport(len(examples), positives, seconds, len(examples) * epochs / seconds, out_dir)


def tower_records(tower, embed: Callable[[list[str]], "np.ndarray"], items: list[QAItem],
                  by_article: dict[str, list[QAItem]], seed: int = 13, distractors: int = 4) -> list[dict]:
    """Per question: its candidates' features (the answerer's) and labels, for fitting and scoring.
    ``embed`` gives the base model's unit vectors, as ingest stores them."""
    import numpy as np

    from .answering import first_stage_features

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

    from ..ingest.embedding import embed_all, load_embedder
    from .reader import TOWER_FEATURES, QuestionTower, save_calibration

    tower = QuestionTower(Path(model_dir))
    embedder = load_embedder(tower.base_model)
    items = load_squad(squad_path)
    by_article = group_by_article(items)
    calib = [it for it in items if split_of(it.article) == "heldout" and half_of(it.qid) == "calib"]
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
