"""Trestle's benchmark suite: Trestle beside bare ASGI, Truss's server, LitServe and BentoML.

Entry point: ``bench/run`` (or ``python -m bench``); how it works: docs/08-benchmarks.md.
"""
