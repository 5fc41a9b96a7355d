"""Explanations read as regions, as the paper evaluates them.

- :mod:`~gadlib.evaluation.regions`: binary mask -> groups of pixels -> convex hulls -> complexity;
- :mod:`~gadlib.evaluation.sensitivity`: occlusion of region sets and the sensitivity RS;
- :mod:`~gadlib.evaluation.table`: the per-image table (RC, RS of each region set) and its summaries.
"""
