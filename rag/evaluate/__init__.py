"""Measuring: `rag eval` (questions, metrics, HTML report) and the retrieval and scale benchmarks."""
