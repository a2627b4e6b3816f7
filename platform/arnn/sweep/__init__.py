"""Sweeps: specs (`spec`), Optuna search spaces (`space`), Ray Tune (`tune`)."""
