"""Explanations read as regions, as the paper evaluates them (docs/method.md): hulls, occlusion, baselines,
the per-image table, map agreement, paired tests of the claims, and Quantus's metrics."""
