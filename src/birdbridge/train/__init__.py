"""Distillation training: the student's audio embeddings learn to land on a frozen teacher's embeddings."""
