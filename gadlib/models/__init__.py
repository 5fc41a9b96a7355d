"""Classifiers and their training: architectures, the training loop, checkpoints."""
