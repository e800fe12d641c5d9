"""Evaluation: retrieval MAP / R@k, kNN and zero-shot accuracy, and bootstrap confidence intervals."""
