"""Benchmark suite for issue #6.

Usage: `.venv/bin/python bench/run.py [--db sqlite|postgres|both] [--smoke] [--duration S]`.

See bench/README.md for what it measures and how to read the results.
"""

import sys
from pathlib import Path

# Run as a script from anywhere: make the project importable (the app and this package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.suite import main

if __name__ == "__main__":
    sys.exit(main())
