"""Documents in, index out: loading, PDF text, structure and dates, chunking, sentences,
embedding, BM25 and the crash-safe on-disk index."""
