"""Algorithm 1 (docs/method.md): artificial distancing of the logits (pair, One vs All, Split output space),
a strategy lowering some logits of each image (:func:`lowering_mask`), logit j by ``scale * spread[j]``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from gadlib.choices import STRATEGIES


def check_alpha_schedule(alphas: Sequence[float]) -> tuple[float, ...]:
    """The α schedule ``a_1 < ... < a_K`` as a tuple of floats, checked: positive, finite, strictly
    increasing; or all zeros (the control without distancing)."""
    values = tuple(float(a) for a in alphas)
    if not values:
        raise ValueError("the alpha schedule is empty; give at least one alpha, e.g. [0.5, 1, 1.5, 2, 2.5]")
    if not any(values):
        return values
    if bad := [a for a in values if not (math.isfinite(a) and a > 0)]:
        raise ValueError(f"every alpha must be positive and finite; got {bad} in {list(values)}")
    if any(later <= earlier for earlier, later in zip(values, values[1:], strict=False)):
        raise ValueError(f"alphas must be strictly increasing; got {list(values)}")
    return values


def logit_spread(logits: torch.Tensor) -> torch.Tensor:
    """(C,) standard deviation of each column of (N, C) logits, N >= 2 (population std, ddof = 0)."""
    _check_logits(logits)
    if len(logits) < 2:
        raise ValueError(f"the spread of the logits needs at least 2 images; got {len(logits)}")
    return logits.std(dim=0, correction=0)


def lowering_mask(
    labels: torch.Tensor,
    num_classes: int,
    strategy: str,
    *,
    pair: Sequence[int] | None = None,
    cls: int | None = None,
    groups: tuple[Sequence[int], Sequence[int]] | None = None,
    allow_other: bool = False,
) -> torch.Tensor:
    """(N, C) bool tensor, True where a distancing strategy lowers the logit.

    ``labels``: (N,) class indices in [0, C); ``strategy``: ``"pair"`` (needs ``pair=(k, l)``),
    ``"one_vs_all"`` (``cls``) or ``"split"`` (``groups=(G1, G2)``); ``allow_other``: leave images of a
    class outside the pair or groups unchanged instead of raising ValueError.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise ValueError("labels must be an integer tensor of shape (N,)")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must be indices into the {num_classes} logits; got values from "
            f"{int(labels.min())} to {int(labels.max())}"
        )
    needs = {"pair": (pair, "pair=(k, l)"), "one_vs_all": (cls, "cls"), "split": (groups, "groups=(group1, group2)")}
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown distancing strategy {strategy!r}; use one of {STRATEGIES}")
    if needs[strategy][0] is None:
        raise ValueError(f"strategy {strategy!r} needs {needs[strategy][1]}")
    labels = labels.cpu()
    present = set(labels.tolist())
    mask = torch.zeros(len(labels), num_classes, dtype=torch.bool)
    if strategy == "pair":
        first, second = _check_pair(pair, num_classes, present)
        mask[labels == first, second] = True
        mask[labels == second, first] = True
        _check_others(labels, (first, second), allow_other, f"pair {(first, second)}")
    elif strategy == "one_vs_all":
        _check_class_index(cls, num_classes, "cls")
        if cls not in present:
            raise ValueError(f"class {cls} has no image among the labels")
        if present == {cls}:
            raise ValueError(f"one_vs_all needs images of a class other than {cls}")
        is_cls = labels == cls
        mask[is_cls] = True
        mask[:, cls] = ~is_cls
    else:  # split
        group1, group2 = _check_groups(groups, num_classes, present)
        for own, other in ((group1, group2), (group2, group1)):
            mask[torch.isin(labels, torch.tensor(own)).nonzero(), torch.tensor(other)] = True
        _check_others(labels, group1 + group2, allow_other, f"groups {group1} and {group2}")
    return mask


def distancing_targets(
    strategy: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    scale: float,
    spread: torch.Tensor | Sequence[float] | None = None,
    pair: Sequence[int] | None = None,
    cls: int | None = None,
    groups: tuple[Sequence[int], Sequence[int]] | None = None,
    allow_other: bool = False,
) -> torch.Tensor:
    """A new (N, C) tensor of the target logits of one distancing step, from (N, C) ``logits`` Z and (N,)
    integer ``labels``: each logit j that the strategy lowers (``strategy``, ``pair``, ``cls``, ``groups``,
    ``allow_other``: :func:`lowering_mask`) goes down by ``scale`` (the step's α >= 0) times ``spread[j]``
    ((C,); default :func:`logit_spread` of ``logits``).

    Examples
    --------
    >>> import torch
    >>> from gadlib import distancing_targets
    >>> logits = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])  # images of classes 0, 0, 1
    >>> labels = torch.tensor([0, 0, 1])
    >>> distancing_targets("pair", logits, labels, scale=1.0, spread=[1.0, 2.0], pair=(0, 1))
    tensor([[ 2., -2.],
            [ 1., -1.],
            [-1.,  3.]])

    Only the other class's logit goes down, so each margin grows by exactly ``scale * spread``.
    """
    _check_logits(logits, labels)
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale must be a finite number >= 0; got {scale!r}")
    num_classes = logits.shape[1]
    spread = logit_spread(logits) if spread is None else torch.as_tensor(spread, dtype=logits.dtype)
    if spread.shape != (num_classes,) or not bool(torch.isfinite(spread).all()) or bool((spread < 0).any()):
        raise ValueError(
            f"spread must be a finite non-negative tensor of shape ({num_classes},); got shape {tuple(spread.shape)}"
        )
    mask = lowering_mask(labels, num_classes, strategy, pair=pair, cls=cls, groups=groups, allow_other=allow_other)
    if flat_columns := (mask.any(dim=0) & (spread == 0)).nonzero().flatten().tolist():
        message = f"logit columns {flat_columns} have zero spread, so distancing does not move them"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    shift = scale * spread.to(logits.dtype).to(logits.device)
    return logits - mask.to(logits.device) * shift


def distancing_margin(
    logits: torch.Tensor,
    labels: torch.Tensor,
    strategy: str,
    *,
    pair: Sequence[int] | None = None,
    cls: int | None = None,
    groups: tuple[Sequence[int], Sequence[int]] | None = None,
) -> torch.Tensor:
    """(N,) margin that distancing widens: ``z_y`` minus the largest logit the strategy lowers (for a pair,
    z_true − z_other); NaN for images of a class the strategy does not involve."""
    _check_logits(logits, labels)
    mask = lowering_mask(labels, logits.shape[1], strategy, pair=pair, cls=cls, groups=groups, allow_other=True)
    mask = mask.to(logits.device)
    own = logits.gather(1, labels.to(logits.device).long().unsqueeze(1)).squeeze(1)
    margin = own - logits.masked_fill(~mask, -math.inf).amax(dim=1)
    return torch.where(mask.any(dim=1), margin, torch.full_like(margin, math.nan))


def two_means_split(
    logits: torch.Tensor, labels: torch.Tensor, seed: int = 0, n_init: int = 10
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(group1, group2), sorted tuples of class indices (group1 holds the smallest): 2-means of the
    class-mean logit vectors of (N, C) ``logits``, (N,) ``labels`` of at least 2 classes. Lloyd's algorithm
    from ``n_init`` starts (the two farthest means, then pairs drawn with ``seed``); lowest inertia wins.
    """
    _check_logits(logits, labels)
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise ValueError(f"a split needs at least 2 classes among the labels; got {classes}")
    values = logits.detach().cpu().double().numpy()
    label_array = labels.cpu().numpy()
    points = np.stack([values[label_array == c].mean(axis=0) for c in classes])
    distances = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
    if distances.max() == 0:
        raise ValueError("all class-mean logit vectors are identical; there is no split to find")
    rng = np.random.default_rng(seed)
    starts = [np.unravel_index(np.argmax(distances), distances.shape)]
    starts += [tuple(rng.choice(len(classes), size=2, replace=False)) for _ in range(n_init - 1)]
    best_assignment, best_inertia = None, math.inf
    for first, second in starts:
        if distances[first, second] == 0:
            continue
        assignment = _lloyd_two_means(points, points[[first, second]])
        inertia = sum(((points[assignment == g] - points[assignment == g].mean(axis=0)) ** 2).sum() for g in (0, 1))
        if inertia < best_inertia - 1e-12:
            best_assignment, best_inertia = assignment, inertia
    groups = (tuple(int(c) for c, g in zip(classes, best_assignment, strict=True) if g == group) for group in (0, 1))
    return tuple(sorted(groups, key=min))


def _lloyd_two_means(points: np.ndarray, centres: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Lloyd iterations for k = 2 from distinct starting centres; both clusters stay non-empty."""
    assignment = None
    for _ in range(max_iter):
        distances = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
        new_assignment = distances.argmin(axis=1)
        if new_assignment.min() == new_assignment.max():  # one cluster emptied: keep the last split
            break
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        centres = np.stack([points[assignment == g].mean(axis=0) for g in (0, 1)])
    return assignment


def _check_logits(logits: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    """Finite float (N, C) logits, and, if given, one label per row."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a float tensor of shape (N, C); got {shape}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits contain NaN or infinite values")
    if labels is not None and len(labels) != len(logits):
        raise ValueError(f"{len(logits)} rows of logits but {len(labels)} labels")


def _check_class_index(value: int, num_classes: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < num_classes:
        raise ValueError(f"{name} = {value!r} is not a logit index in [0, {num_classes})")


def _check_pair(pair: Sequence[int], num_classes: int, present: set[int]) -> tuple[int, int]:
    if len(pair) != 2:
        raise ValueError(f"pair must hold two class indices; got {pair!r}")
    for c in pair:
        _check_class_index(c, num_classes, "pair class")
    first, second = pair
    if first == second:
        raise ValueError(f"the pair's classes must differ; got {tuple(pair)}")
    if missing := [c for c in (first, second) if c not in present]:
        raise ValueError(f"pair {tuple(pair)}: class {missing} has no image among the labels")
    return int(first), int(second)


def _check_groups(groups, num_classes: int, present: set[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if len(groups) != 2:
        raise ValueError(f"groups must be two sequences of class indices; got {groups!r}")
    checked = []
    for name, group in zip(("group1", "group2"), groups, strict=True):
        group = tuple(group)
        if not group:
            raise ValueError(f"{name} is empty; each group needs at least one class")
        for c in group:
            _check_class_index(c, num_classes, f"{name} class")
        if len(set(group)) != len(group):
            raise ValueError(f"{name} {group} lists a class twice")
        if not present & set(group):
            raise ValueError(f"{name} {group}: none of its classes has an image among the labels")
        checked.append(tuple(int(c) for c in group))
    if overlap := set(checked[0]) & set(checked[1]):
        raise ValueError(f"groups overlap on classes {sorted(overlap)}; a class belongs to one group")
    return checked[0], checked[1]


def _check_others(labels: torch.Tensor, involved: Sequence[int], allow_other: bool, what: str) -> None:
    if (others := sorted(set(labels.tolist()) - set(involved))) and not allow_other:
        raise ValueError(
            f"labels hold classes {others} outside {what}; select those images first, "
            "or pass allow_other=True to leave them unchanged"
        )
