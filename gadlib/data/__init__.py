"""Datasets (Fashion-MNIST, Dogs vs. Cats, CUB-200-2011) and an experiment's prepared splits."""
