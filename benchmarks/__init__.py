"""Gradient benchmarks: pullback against hand-written numpy and JAX (`python benchmarks/run.py`)."""
