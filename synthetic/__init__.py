"""Synthetic shops with ground truth, for demos, tests and benchmarks: a tool, not a pipeline stage."""
