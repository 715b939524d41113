"""Benchmarks and local test doubles (e.g. a fake ESP API) for the newsletter."""
