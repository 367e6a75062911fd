"""A question in, an answer out: retrieval, follow-ups and spelling, the extractive answerer and
its readers, date handling, optional generation with verification, and the safety screen."""
