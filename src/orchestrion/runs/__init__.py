"""Runs: the run records, the daily pipeline, the retrain, the scheduler and triggers."""
