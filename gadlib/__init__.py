"""gadlib: Gradient Artificial Distancing (GAD, arXiv 2401.14434; docs/method.md) for gradient-based
explanations of CNNs: :mod:`gadlib.method`, :mod:`gadlib.evaluation`, :mod:`gadlib.models`, :mod:`gadlib.data`
and :mod:`gadlib.project` (what the pipeline's notebooks share). Images everywhere are pixel-space (N, C, H,
W) floats in [0, 1], each model normalising inside itself. The names below are imported on first use, so
``import gadlib`` stays light (no torch).
"""

from importlib import import_module

__version__ = "0.1.0"

_MODULES = {  # the module that defines them -> public names
    "gadlib.method.gad": ("GAD",),
    "gadlib.method.fusion": ("FusionResult", "fuse_maps", "pixel_importance", "binarize"),
    "gadlib.method.distancing": ("distancing_targets",),
    "gadlib.method.support": ("train_support_models", "SupportModels", "load_support_models", "support_fidelity"),
    "gadlib.method.batched": ("attribute_models",),
    "gadlib.evaluation.table": ("evaluate_maps", "summarize"),
    "gadlib.evaluation.regions": ("hull_polygons", "hull_complexity"),
    "gadlib.evaluation.sensitivity": ("occlusion_sensitivity",),
    "gadlib.evaluation.quantus_adapter": ("QuantusExplainFunc",),
    "gadlib.evaluation.standard_metrics": ("standard_metrics", "summarize_standard_metrics"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}  # public name -> its module
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gadlib' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
