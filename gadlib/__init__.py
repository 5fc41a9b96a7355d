"""gadlib: Gradient Artificial Distancing (GAD) for gradient-based explanations of CNNs.

GAD (arXiv 2401.14434) trains support regression models whose logits push two classes further
apart, explains the original and every support model, and keeps only the pixels all of them agree
on. The evaluation reads explanations as regions: convex hulls of groups of important pixels.

- :mod:`gadlib.method`: the method itself (Algorithm 1, support models, Algorithm 2, ``GAD``);
- :mod:`gadlib.evaluation`: regions and hulls, occlusion sensitivity, the per-image table, and
  Quantus's standard metrics through a GAD adapter;
- :mod:`gadlib.models`, :mod:`gadlib.data`: classifiers, their training, the datasets;
- :mod:`gadlib.pipeline`: the DVC pipeline's stages, parameters, report and figures.

The names below are imported on first use, so ``import gadlib`` stays light (no torch).

Images everywhere are pixel-space (N, C, H, W) float values in [0, 1], the model normalising inside
itself: Integrated Gradients' default baseline (zero) is then a black image (see :class:`GAD`).
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "GAD": "gadlib.method.gad",
    "FusionResult": "gadlib.method.fusion",
    "fuse_maps": "gadlib.method.fusion",
    "pixel_importance": "gadlib.method.fusion",
    "binarize": "gadlib.method.fusion",
    "distancing_targets": "gadlib.method.distancing",
    "train_support_models": "gadlib.method.support",
    "SupportModels": "gadlib.method.support",
    "load_support_models": "gadlib.method.support",
    "support_fidelity": "gadlib.method.support",
    "attribute_models": "gadlib.method.batched",
    "evaluate_maps": "gadlib.evaluation.table",
    "summarize": "gadlib.evaluation.table",
    "hull_polygons": "gadlib.evaluation.regions",
    "hull_complexity": "gadlib.evaluation.regions",
    "occlusion_sensitivity": "gadlib.evaluation.sensitivity",
    "QuantusExplainFunc": "gadlib.evaluation.quantus_adapter",
    "standard_metrics": "gadlib.evaluation.standard_metrics",
    "summarize_standard_metrics": "gadlib.evaluation.standard_metrics",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gadlib' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
