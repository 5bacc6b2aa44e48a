"""Benchmarks: each module compares podtrail with the reference its issue names, in one run."""
