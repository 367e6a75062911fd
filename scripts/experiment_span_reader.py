"""Design D of the reader issue, as an experiment: a SQuAD 2.0 span-extraction reader on MiniLM.

It lost to the heuristic (README, "The reader: what was tried"), so nothing of it ships; this
script reproduces its figures:

    python scripts/experiment_span_reader.py train OUT [EPOCHS]   # 2 epochs: ~21 min on 2 AMX cores
    python scripts/experiment_span_reader.py squad OUT            # held-out SQuAD halves
    python scripts/experiment_span_reader.py dev OUT [K]          # eval sets' dev halves, top K chunks

The bundled MiniLM with a start/end head over "[CLS] question [SEP] paragraph [SEP]" (256
tokens, 96-token stride), trained on the train articles of rag.answer.training.split_of (seed 13, batch
16, lr 5e-5, 10% warm-up then linear decay, bfloat16 autocast on AMX). No answer is the [CLS]
span, as in BERT's SQuAD 2.0 recipe; the answer sentence is the one holding the best span's
start, and its margin over [CLS] decides refusal.
"""
import json
import math
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from rag.config import offline_environment

offline_environment()
from rag.ingest.embedding import resolve_model
from rag.answer.training import split_of, half_of, default_squad
from rag.ingest.chunking import split_sentences

MAXLEN, STRIDE = 256, 96

class SpanReader(torch.nn.Module):
    def __init__(self, path):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
        self.qa = torch.nn.Linear(self.encoder.config.hidden_size, 2)
    def forward(self, input_ids, attention_mask, token_type_ids=None):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        logits = self.qa(h).float()
        return logits[..., 0], logits[..., 1]

def raw_items(path):
    data = json.loads(Path(path).read_text())["data"]
    out = []
    for art in data:
        for para in art["paragraphs"]:
            for qa in para["qas"]:
                ans = [] if qa.get("is_impossible") else qa["answers"]
                out.append(dict(id=qa["id"], article=art["title"], question=qa["question"], context=para["context"],
                                answers=[(a["answer_start"], a["answer_start"] + len(a["text"])) for a in ans]))
    return out

def features(tok, questions, contexts):
    return tok(questions, contexts, truncation="only_second", max_length=MAXLEN, stride=STRIDE,
               return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length", return_tensors="pt")

def train(out, epochs=2, bs=16, lr=5e-5, seed=13):
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
    path = resolve_model("bundled")
    tok = AutoTokenizer.from_pretrained(path)
    items = [it for it in raw_items(default_squad()) if split_of(it["article"]) == "train"]
    enc = features(tok, [it["question"] for it in items], [it["context"] for it in items])
    starts, ends = [], []
    for i in range(len(enc["input_ids"])):
        it = items[enc["overflow_to_sample_mapping"][i]]
        seq = enc.sequence_ids(i)
        offs = enc["offset_mapping"][i].tolist()
        s = e = 0
        if it["answers"]:
            a0, a1 = it["answers"][0]
            ctx = [k for k, sid in enumerate(seq) if sid == 1]
            if offs[ctx[0]][0] <= a0 and offs[ctx[-1]][1] >= a1:
                s = next(k for k in ctx if offs[k][1] > a0)
                e = max(k for k in ctx if offs[k][0] < a1)
        starts.append(s); ends.append(e)
    n = len(starts)
    print(f"{len(items)} questions, {n} windows, {sum(1 for s in starts if s)} with a span", flush=True)
    model = SpanReader(path); model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(n / bs)
    def rate(k):  # 10% linear warm-up, then linear decay to 0
        return k / (0.1 * steps) if k < 0.1 * steps else max(0.0, (steps - k) / (0.9 * steps))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    amx = torch.cpu._is_amx_tile_supported()
    t0 = time.time(); step = 0
    S, E = torch.tensor(starts), torch.tensor(ends)
    for ep in range(epochs):
        order = torch.randperm(n)
        for b in range(0, n, bs):
            idx = order[b:b + bs]
            mask = enc["attention_mask"][idx]
            L = int(mask.sum(1).max())
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amx):
                sl, el = model(enc["input_ids"][idx][:, :L], mask[:, :L], enc["token_type_ids"][idx][:, :L])
            sl = sl.masked_fill(mask[:, :L] == 0, -1e4); el = el.masked_fill(mask[:, :L] == 0, -1e4)
            loss = (torch.nn.functional.cross_entropy(sl, S[idx]) + torch.nn.functional.cross_entropy(el, E[idx])) / 2
            loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); sched.step(); opt.zero_grad(); step += 1
            if step % 50 == 0:
                print(f"ep {ep} step {step}/{steps} loss {loss.item():.3f} {time.time()-t0:.0f}s", flush=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, Path(out) / "span.pt")
    json.dump({"train_seconds": round(time.time() - t0, 1), "windows": n, "questions": len(items), "epochs": epochs,
               "seed": seed, "lr": lr, "bs": bs}, open(Path(out) / "span.json", "w"))
    print("trained in", round(time.time() - t0), "s")

_CACHE = {}
def load(out):
    if out not in _CACHE:
        path = resolve_model("bundled")
        m = SpanReader(path)
        sd = torch.load(Path(out) / "span.pt")
        m.load_state_dict({k: v.float() for k, v in sd.items()}); m.eval()
        _CACHE[out] = (m, AutoTokenizer.from_pretrained(path))
    return _CACHE[out]

@torch.no_grad()
def read(out, question, contexts, max_answer_tokens=30):
    """For each context: (best span score - null score, (char_start, char_end)) over its windows."""
    m, tok = load(out)
    enc = features(tok, [question] * len(contexts), contexts)
    mask = enc["attention_mask"]; L = int(mask.sum(1).max())
    sl, el = m(enc["input_ids"][:, :L], mask[:, :L], enc["token_type_ids"][:, :L])
    res = [(-1e9, None, 1e9)] * len(contexts)
    for i in range(len(enc["input_ids"])):
        c = int(enc["overflow_to_sample_mapping"][i])
        seq = enc.sequence_ids(i); offs = enc["offset_mapping"][i].tolist()
        ctx = [k for k in range(L) if seq[k] == 1]
        s, e = sl[i, :L].numpy(), el[i, :L].numpy()
        null = float(s[0] + e[0])
        top_s = sorted(ctx, key=lambda k: -s[k])[:10]; top_e = sorted(ctx, key=lambda k: -e[k])[:10]
        best, span = -1e9, None
        for a in top_s:
            for b in top_e:
                if a <= b < a + max_answer_tokens and s[a] + e[b] > best:
                    best, span = float(s[a] + e[b]), (offs[a][0], offs[b][1])
        if res[c][1] is None or best - null > res[c][0] - res[c][2]:  # the context's best window
            res[c] = (best, span, null)
    return [(b - n, sp) for b, sp, n in res]

def squad(out):
    items = [it for it in raw_items(default_squad()) if split_of(it["article"]) == "heldout"]
    for half in ("calib", "test"):
        sub = [it for it in items if half_of(it["id"]) == half]
        random.Random(13).shuffle(sub); sub = sub[:250] if half == "calib" else sub
        recs = []
        for it in sub:
            (margin, span), = read(out, it["question"], [it["context"]])
            sents = split_sentences(it["context"])
            pick = next((k for k, (a, b) in enumerate(sents) if span and a <= span[0] < b), None)
            gold = {k for k, (a, b) in enumerate(sents) for (x, y) in it["answers"] if a < y and x < b}
            recs.append((margin, bool(it["answers"]), pick in gold))
        print(half, len(recs))
        for t in (-4, -2, -1, 0, 1, 2, 4):
            ans = [r for r in recs if r[1]]; un = [r for r in recs if not r[1]]
            acc = sum(1 for r in ans if r[0] >= t and r[2]) / len(ans)
            refused = [r for r in recs if r[0] < t]
            R = sum(1 for r in un if r[0] < t) / len(un); P = sum(1 for r in refused if not r[1]) / max(1, len(refused))
            print(f"  t={t:+}: sentence acc (answered & right) {acc:.3f}  no-answer R {R:.3f} P {P:.3f}")
        ans = [r for r in recs if r[1]]
        print(f"  sentence acc ignoring refusal: {sum(r[2] for r in ans)/len(ans):.3f}")

def _norm(s):
    return re.sub(r"\s+", " ", s.lower()).strip()


def dev(out, k=3, split="dev"):
    """Through the real retrieval: read the top k chunks, answer with the sentence holding the best span."""
    from rag.config import Settings
    from rag.answer.conversation import standalone
    from rag.pipeline import Pipeline

    root = Path(__file__).resolve().parent.parent
    for qfile, ix in [("eval/questions.jsonl", ".cache/eval-index"), ("eval/seiu503.jsonl", ".cache/seiu503-index")]:
        p = Pipeline(Settings.from_env(index_dir=(root / ix).resolve()))
        recs, times = [], []
        for line in open(root / qfile):
            it = json.loads(line)
            if it.get("split") != split:
                continue
            t0 = time.perf_counter()
            q = p.index.speller.correct(it["question"]).text
            query = standalone(q, it.get("history"))
            r = p.retriever()
            hits = r.search(query, 8, vector=r.embed_query(query))[:k]
            res = read(out, query, [h.chunk.text for h in hits])
            best = max(range(len(res)), key=lambda i: res[i][0])
            margin, sp = res[best]
            chunk, sent = hits[best].chunk, ""
            if sp:
                at = chunk.start + sp[0]
                for _, a, b in r.index.sentences_of(r.index.row_of(chunk)):
                    if a <= at < b:
                        sent = r.index.documents[chunk.doc_id].text[a:b]
                        break
            times.append(time.perf_counter() - t0)
            ok = it["answerable"] and any(_norm(x) in _norm(sent) for x in it["answers"])
            recs.append((margin, it["answerable"], ok))
        ans = [x for x in recs if x[1]]
        un = [x for x in recs if not x[1]]
        print(qfile, split, f"top {k} chunks read; p50 {1000 * np.median(times):.0f} ms a question")
        for t in (-6, -4, -3, -2, -1, 0, 1):
            acc = sum(1 for x in ans if x[0] >= t and x[2]) / len(ans)
            ref = [x for x in recs if x[0] < t]
            R = sum(1 for x in un if x[0] < t) / len(un)
            P = sum(1 for x in ref if not x[1]) / max(1, len(ref))
            print(f"  t={t:+}: answer accuracy {acc:.3f} refusal R {R:.3f} P {P:.3f}")
        print(f"  sentence right ignoring refusal: {sum(x[2] for x in ans)}/{len(ans)}")


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("train", "squad", "dev"):
        sys.exit(__doc__)
    cmd, out = sys.argv[1], sys.argv[2]
    if cmd == "train":
        train(out, epochs=int(sys.argv[3]) if len(sys.argv) > 3 else 2)
    elif cmd == "squad":
        squad(out)
    elif cmd == "dev":
        dev(out, k=int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    else:
        sys.exit(f"unknown command {cmd!r}: train, squad or dev")
