"""The benchmark suite of issue #6; `bench/run.py` runs it."""
