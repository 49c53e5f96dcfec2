"""Benchmarks and evaluation: a leaf that only the CLI imports (one module per `gs-semantic bench`
kind; `common`, `fixtures` and `metrics` shared by them). Quality figures use oracle perception."""
