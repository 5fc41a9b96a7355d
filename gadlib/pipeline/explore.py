"""What the explorer notebook (``notebooks/explore.ipynb``) shows: one experiment, method and image at a time.

After ``dvc repro``, :class:`Explorer` reads what the stages saved (the attribute stage's maps, the
hull_metrics stage's per-image table) and draws, for one explained image: the image, the K + 1
importance maps and their binarised masks, the consistency mask and the GAD map; the convex hulls of
the original's and of GAD's regions; and each region set occluded, with the score drop the stage
measured. The region sets are rebuilt by the function and with the settings and random draws of the
hull_metrics stage, so the occluded pixels are the ones it measured. :func:`controls` wraps it in
ipywidgets (dropdowns for experiment, method and image).
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import pandas as pd
from IPython.display import display
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from gadlib import plots as plotting
from gadlib.evaluation.table import RegionSets
from gadlib.pipeline import figures
from gadlib.pipeline.experiment import load_attributions
from gadlib.pipeline.params import Params
from gadlib.pipeline.paths import ExperimentPaths


@dataclasses.dataclass
class Explained:
    """One method of one experiment, as the pipeline saved and measured it.

    Attributes
    ----------
    experiment, method : names, as in params.yaml
    saved : the attribute stage's arrays (:func:`gadlib.pipeline.experiment.load_attributions`):
        ``images`` (N, C, H, W), ``importance`` and ``masks`` (K + 1, N, H, W), ``consistency``,
        ``gad_importance`` (N, H, W), ``index`` (N,) dataset indices, ...
    region_sets : the N images' region sets and hull polygons, as the hull_metrics stage built them
    table : the hull_metrics stage's rows of this experiment and method (one per image and region set)
    """

    experiment: str
    method: str
    saved: dict
    region_sets: RegionSets
    table: pd.DataFrame

    @property
    def image_ids(self) -> list[int]:
        """Dataset index of each explained image, in saved order."""
        return [int(i) for i in self.saved["index"]]

    def position(self, image: int | None) -> int:
        """Where the image with dataset index ``image`` is in the saved arrays (None: the first)."""
        if image is None:
            return 0
        if image not in self.image_ids:
            raise ValueError(
                f"image {image} was not explained in {self.experiment} ({self.method}); "
                f"the explained images are {self.image_ids}"
            )
        return self.image_ids.index(image)


class Explorer:
    """The pipeline's saved outputs, one experiment, method and image at a time.

    Parameters
    ----------
    params : the validated params.yaml the pipeline ran with
    """

    def __init__(self, params: Params):
        self.params = params
        self._loaded: dict[tuple[str, str], Explained] = {}

    @cached_property
    def methods_by_experiment(self) -> dict[str, list[str]]:
        """Experiments whose attribute stage has run -> the methods with saved maps, in params order."""
        found = {}
        for experiment in self.params.experiment_names:
            paths = ExperimentPaths(experiment)
            methods = [m for m in self.params.attribution.methods if paths.attributions(m).is_file()]
            if methods and paths.hull_metrics.is_file():
                found[experiment] = methods
        return found

    @property
    def experiments(self) -> list[str]:
        """Experiments with saved maps and hull metrics; ValueError when there is none yet."""
        if not self.methods_by_experiment:
            raise ValueError("no experiment has saved maps and hull metrics yet: run `dvc repro` first")
        return list(self.methods_by_experiment)

    def explained(self, experiment: str | None = None, method: str | None = None) -> Explained:
        """One method of one experiment (None: the first available), loaded once and kept."""
        experiment = experiment or self.experiments[0]
        if experiment not in self.methods_by_experiment:
            raise ValueError(f"experiment {experiment!r} has no saved maps; available: {self.experiments}")
        methods = self.methods_by_experiment[experiment]
        method = method or methods[0]
        if method not in methods:
            raise ValueError(f"method {method!r} has no saved maps in {experiment}; available: {methods}")
        if (experiment, method) not in self._loaded:
            saved = load_attributions(experiment, method)
            params = self.params
            sets = figures.example_region_sets(
                saved, params.regions, params.seed, len(saved["index"]), params.statistics.random_subset_draws
            )
            table = pd.read_csv(ExperimentPaths(experiment).hull_metrics)
            rows = table[(table["experiment"] == experiment) & (table["method"] == method)]
            self._loaded[experiment, method] = Explained(experiment, method, saved, sets, rows)
        return self._loaded[experiment, method]

    def overview(self) -> pd.DataFrame:
        """Per experiment and method: images explained, empty GAD maps, median RC (the stage's table)."""
        rows = []
        for experiment, methods in self.methods_by_experiment.items():
            table = pd.read_csv(ExperimentPaths(experiment).hull_metrics)
            gad = table[table["region_set"] == "gad"]
            for method in methods:
                part = gad[gad["method"] == method]
                rows.append(
                    {
                        "experiment": experiment,
                        "method": method,
                        "images": part["image"].nunique(),
                        "empty GAD maps": int(part["n_pixels"].eq(0).sum()),
                        "median RC": part["rc"].median(),
                    }
                )
        return pd.DataFrame(rows)

    def figures(self, experiment: str | None = None, method: str | None = None, image: int | None = None):
        """The figures of one image: :func:`maps_figure`, :func:`masks_figure`, :func:`hulls_figure` and
        :func:`occlusion_figure` (None: the first experiment, method or image)."""
        explained = self.explained(experiment, method)
        position = explained.position(image)
        alphas = self.params.support.alpha_schedule
        return (
            maps_figure(explained, position, alphas),
            masks_figure(explained, position, alphas),
            hulls_figure(explained, position),
            occlusion_figure(explained, position, self.params),
        )

    def show(self, experiment: str | None = None, method: str | None = None, image: int | None = None) -> None:
        """Display the figures of one image (None: the first experiment, method, image) and close them."""
        explained = self.explained(experiment, method)
        position = explained.position(image)
        print(
            f"{explained.experiment}, {explained.method}: test image {explained.image_ids[position]} "
            f"(explained image {position + 1} of {len(explained.image_ids)}; the panels below call it image 0)"
        )
        for fig in self.figures(explained.experiment, explained.method, explained.image_ids[position]):
            display(fig)
            plt.close(fig)


def one_image(explained: Explained, position: int) -> tuple[dict, RegionSets]:
    """The saved arrays and the region sets of the image at ``position`` alone (first axis of length 1)."""
    keep = slice(position, position + 1)
    saved = {
        key: value[:, keep] if key in ("importance", "masks") else value[keep] for key, value in explained.saved.items()
    }
    sets = explained.region_sets
    region_sets = dataclasses.replace(
        sets,
        masks={name: mask[keep] for name, mask in sets.masks.items()},
        subset_draws=sets.subset_draws[:, keep],
        polygons=sets.polygons[keep],
        **{
            field: {name: values[keep] for name, values in getattr(sets, field).items()}
            for field in ("n_pixels", "n_regions", "complexity", "hull_area")
        },
    )
    return saved, region_sets


def maps_figure(explained: Explained, position: int, alphas: list[float]) -> Figure:
    """The image, the importance map of the original and of each support model, and the GAD map, drawn
    as the report's attribution grid draws them.

    Parameters
    ----------
    explained : one method of one experiment; position : the image's place in the saved arrays
    alphas : the α schedule of the support models, for the column titles
    """
    saved, _ = one_image(explained, position)
    method = explained.method
    return plotting.plot_attribution_grid(
        saved["images"],
        {method: saved["importance"]},
        {method: saved["gad_importance"]},
        figures.model_labels(alphas),
        image_indices=[0],
    )


def masks_figure(explained: Explained, position: int, alphas: list[float]) -> Figure:
    """Each map's binarised mask (the pixels fusion keeps from it) and their consistency: the pixels
    every map keeps, where GAD's map is non-zero."""
    saved, _ = one_image(explained, position)
    labels = figures.model_labels(alphas)
    masks = [(f"{label}: {int(mask.sum())} px", mask) for label, mask in zip(labels, saved["masks"][:, 0], strict=True)]
    masks.append((f"consistency: {int(saved['consistency'][0].sum())} px", saved["consistency"][0]))
    fig, axes = plt.subplots(1, len(masks), figsize=(2.1 * len(masks), 2.6), squeeze=False, layout="constrained")
    for ax, (title, mask) in zip(axes[0], masks, strict=True):
        ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set(xticks=[], yticks=[])
    fig.suptitle(f"{explained.experiment}, {explained.method}, image {int(saved['index'][0])}: masks (white: kept)")
    return fig


def hulls_figure(explained: Explained, position: int) -> Figure:
    """The convex hulls of the original's regions and of GAD's over the image."""
    saved, region_sets = one_image(explained, position)
    return figures.hulls_figure(saved, region_sets, f"{explained.experiment}, {explained.method}: hulls")


def occlusion_figure(explained: Explained, position: int, params: Params) -> Figure:
    """Each region set occluded as the hull_metrics stage occluded it, titled by the drop it measured."""
    saved, region_sets = one_image(explained, position)
    sensitivity = params.sensitivity
    mean = figures.pixel_mean(explained.experiment) if sensitivity.fill == "mean" else None
    return figures.occlusion_figure(
        saved,
        region_sets,
        explained.table,
        explained.experiment,
        explained.method,
        sensitivity.fill,
        mean,
        sensitivity.blur_sigma,
    )


def image_options(explained: Explained) -> list[tuple[str, int]]:
    """The image dropdown's (label, dataset index) pairs: "test image 17", in saved order."""
    return [(f"test image {i}", i) for i in explained.image_ids]


def controls(explorer: Explorer, experiment: str | None = None, method: str | None = None, image: int | None = None):
    """Dropdowns for experiment, method and image above the explorer's figures, redrawn on each choice.

    Returns
    -------
    ipywidgets.VBox; display it (the last line of a cell) in JupyterLab.
    """
    import ipywidgets as widgets

    first = explorer.explained(experiment, method)
    experiment_choice = widgets.Dropdown(options=explorer.experiments, value=first.experiment, description="experiment")
    method_choice = widgets.Dropdown(
        options=explorer.methods_by_experiment[first.experiment], value=first.method, description="method"
    )
    image_choice = widgets.Dropdown(
        options=image_options(first), value=first.image_ids[first.position(image)], description="image"
    )
    output = widgets.Output()
    updating = {"options": False}  # new options fire value changes: draw once, after all of them

    def redraw(_=None) -> None:
        if updating["options"]:
            return
        output.clear_output(wait=True)
        with output:
            explorer.show(experiment_choice.value, method_choice.value, image_choice.value)

    def choices_changed(change) -> None:
        if updating["options"]:
            return
        updating["options"] = True
        try:
            if change["owner"] is experiment_choice:
                method_choice.options = explorer.methods_by_experiment[experiment_choice.value]
            explained = explorer.explained(experiment_choice.value, method_choice.value)
            current = image_choice.value
            image_choice.options = image_options(explained)
            image_choice.value = current if current in explained.image_ids else explained.image_ids[0]
        finally:
            updating["options"] = False
        redraw()

    experiment_choice.observe(choices_changed, names="value")
    method_choice.observe(choices_changed, names="value")
    image_choice.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([experiment_choice, method_choice, image_choice]), output])
