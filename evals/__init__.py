"""prefsum evals: judges, simulated labelers, length-controlled preference, Likert transfer, reports.

Imports from training only ``training.task`` and ``training.data`` (no torch), never the service.
"""
