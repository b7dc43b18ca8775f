"""Benchmarks that print measured figures and ratios (no assertions).

``python -m bench`` runs every module here that has a ``main()``;
``python -m bench NAME...`` runs the named ones."""
