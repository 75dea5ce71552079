"""afterward's benchmarks: ``python -m bench`` runs them all, ``python -m bench defer``
runs one. Each compares afterward against its peer measured in the same run."""
