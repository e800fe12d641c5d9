"""Evaluation: retrieval MAP / R@k, kNN and zero-shot accuracy, soundscape window metrics and detections, and
bootstrap confidence intervals."""
