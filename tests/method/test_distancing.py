import math

import pytest
import torch

from gadlib.method.distancing import (
    check_alpha_schedule,
    distancing_margin,
    distancing_targets,
    logit_spread,
    lowering_mask,
    two_means_split,
)

PAIR_LOGITS = torch.tensor([[3.0, 1.0], [2.0, 0.5], [4.0, -1.0], [0.0, 2.0], [1.0, 3.5], [-1.0, 1.0]])
PAIR_LABELS = torch.tensor([0, 0, 0, 1, 1, 1])


def test_logit_spread_is_the_population_std_of_each_column():
    logits = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    assert torch.allclose(logit_spread(logits), torch.tensor([math.sqrt(8 / 3), 0.0]))


def test_pair_lowers_the_other_class_logit_by_scale_times_its_spread():
    spread = logit_spread(PAIR_LOGITS)
    targets = distancing_targets("pair", PAIR_LOGITS, PAIR_LABELS, pair=(0, 1), scale=2.0)
    expected = PAIR_LOGITS.clone()
    expected[:3, 1] -= 2.0 * spread[1]
    expected[3:, 0] -= 2.0 * spread[0]
    assert torch.allclose(targets, expected)


def test_pair_margin_grows_by_exactly_alpha():
    spread = logit_spread(PAIR_LOGITS)
    scale = 1.5
    before = distancing_margin(PAIR_LOGITS, PAIR_LABELS, "pair", pair=(0, 1))
    targets = distancing_targets("pair", PAIR_LOGITS, PAIR_LABELS, pair=(0, 1), scale=scale)
    after = distancing_margin(targets, PAIR_LABELS, "pair", pair=(0, 1))
    alpha = torch.where(PAIR_LABELS == 0, scale * spread[1], scale * spread[0])
    assert torch.allclose(after - before, alpha)
    assert torch.allclose(before, torch.tensor([2.0, 1.5, 5.0, 2.0, 2.5, 2.0]))


def test_pair_keeps_the_order_of_every_logit_inside_each_class():
    torch.manual_seed(0)
    logits = torch.randn(40, 2)
    labels = torch.arange(40) % 2
    targets = distancing_targets("pair", logits, labels, pair=(0, 1), scale=2.5)
    for cls in (0, 1):
        rows = labels == cls
        for column in (0, 1):
            assert torch.equal(logits[rows, column].argsort(), targets[rows, column].argsort())


def test_distancing_does_not_modify_its_inputs():
    logits, labels = PAIR_LOGITS.clone(), PAIR_LABELS.clone()
    spread = logit_spread(logits)
    spread_copy = spread.clone()
    distancing_targets("pair", logits, labels, pair=(0, 1), scale=1.0, spread=spread)
    distancing_targets("one_vs_all", logits, labels, cls=0, scale=1.0)
    assert torch.equal(logits, PAIR_LOGITS) and torch.equal(labels, PAIR_LABELS)
    assert torch.equal(spread, spread_copy)


def test_given_spread_is_used_instead_of_the_logits_own():
    targets = distancing_targets(
        "pair", PAIR_LOGITS, PAIR_LABELS, pair=(0, 1), scale=1.0, spread=torch.tensor([10.0, 100.0])
    )
    assert targets[0, 1] == PAIR_LOGITS[0, 1] - 100.0
    assert targets[3, 0] == PAIR_LOGITS[3, 0] - 10.0


def test_pair_refuses_other_classes_unless_allowed():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="outside pair"):
        distancing_targets("pair", logits, labels, pair=(0, 1), scale=1.0)
    targets = distancing_targets("pair", logits, labels, pair=(0, 1), scale=1.0, allow_other=True)
    assert torch.equal(targets[2], logits[2])
    assert targets[0, 1] < logits[0, 1]


def test_one_vs_all_on_hand_written_logits():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 2])
    spread = torch.tensor([1.0, 2.0, 4.0])
    targets = distancing_targets("one_vs_all", logits, labels, cls=0, scale=0.5, spread=spread)
    expected = torch.tensor(
        [
            [3.0, 0.0, -2.0],  # class 0: every other logit lowered
            [-0.5, 2.0, 1.0],  # others: logit 0 lowered by 0.5 * 1
            [0.5, 0.0, 2.0],
        ]
    )
    assert torch.allclose(targets, expected)


def test_split_on_hand_written_logits():
    logits = torch.zeros(4, 4)
    labels = torch.tensor([0, 1, 2, 3])
    spread = torch.tensor([1.0, 2.0, 3.0, 4.0])
    targets = distancing_targets("split", logits, labels, groups=((0, 2), (1, 3)), scale=1.0, spread=spread)
    expected = torch.tensor(
        [[0.0, -2.0, 0.0, -4.0], [-1.0, 0.0, -3.0, 0.0], [0.0, -2.0, 0.0, -4.0], [-1.0, 0.0, -3.0, 0.0]]
    )
    assert torch.equal(targets, expected)


def test_dispatcher_checks_the_strategy_and_its_arguments():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0], [2.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="unknown distancing strategy 'pairs'"):
        distancing_targets("pairs", logits, labels, scale=1.0, pair=(0, 1))
    with pytest.raises(ValueError, match="needs cls"):
        distancing_targets("one_vs_all", logits, labels, scale=1.0)
    with pytest.raises(ValueError, match="needs groups"):
        distancing_targets("split", logits, labels, scale=1.0)


def test_margin_of_one_vs_all_is_against_the_largest_lowered_logit():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    margins = distancing_margin(logits, torch.tensor([0, 1, 2]), "one_vs_all", cls=0)
    assert torch.allclose(margins, torch.tensor([0.5, 2.0, 1.0]))


def test_lowering_mask_leaves_images_of_uninvolved_classes_unmarked():
    mask = lowering_mask(torch.tensor([0, 1, 2]), 3, "pair", pair=(0, 1), allow_other=True)
    assert mask.tolist() == [[False, True, False], [True, False, False], [False, False, False]]


def test_two_means_finds_obvious_clusters():
    centres = {0: [10.0, 0.0, 0.0, 0.0], 1: [0.0, 10.0, 0.0, 10.0], 2: [9.0, 1.0, 0.0, 0.0], 3: [0.0, 9.0, 1.0, 10.0]}
    labels = torch.tensor([0, 1, 2, 3] * 5)
    torch.manual_seed(0)
    logits = torch.stack([torch.tensor(centres[int(c)]) for c in labels]) + 0.1 * torch.randn(20, 4)
    assert two_means_split(logits, labels) == ((0, 2), (1, 3))
    assert two_means_split(logits, labels, seed=7) == ((0, 2), (1, 3))


def test_two_means_with_two_classes_gives_one_each():
    assert two_means_split(PAIR_LOGITS, PAIR_LABELS) == ((0,), (1,))


def test_two_means_refuses_degenerate_input():
    with pytest.raises(ValueError, match="at least 2 classes"):
        two_means_split(PAIR_LOGITS, torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="identical"):
        two_means_split(torch.ones(4, 3), torch.tensor([0, 1, 2, 0]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": torch.tensor([0, 1, 0])}, "6 rows of logits but 3 labels"),
        ({"pair": (1, 1)}, "must differ"),
        ({"pair": (0, 2)}, r"not a logit index in \[0, 2\)"),
        ({"labels": torch.tensor([0, 0, 0, 0, 0, 0])}, "has no image"),
        ({"scale": -1.0}, "finite number >= 0"),
        ({"scale": math.nan}, "finite number >= 0"),
        ({"scale": math.inf}, "finite number >= 0"),
        ({"logits": PAIR_LOGITS[:, 0]}, r"shape \(N, C\)"),
        ({"logits": torch.full((6, 2), math.nan)}, "NaN"),
        ({"labels": torch.tensor([0, 1, 2, 0, 1, 0])}, "indices into the 2 logits"),
        ({"spread": torch.ones(3)}, "spread must be"),
    ],
)
def test_pair_rejects_bad_input(kwargs, message):
    call = {"logits": PAIR_LOGITS, "labels": PAIR_LABELS, "pair": (0, 1), "scale": 1.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        distancing_targets("pair", **call)


@pytest.mark.parametrize(
    "group1, group2, message",
    [
        ((0, 1), (1, 2), "overlap"),
        ((), (1, 2), "group1 is empty"),
        ((0,), (1, 5), "not a logit index"),
        ((0,), (0,), "overlap"),
        ((0, 0), (1,), "twice"),
    ],
)
def test_split_rejects_bad_groups(group1, group2, message):
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match=message):
        distancing_targets("split", logits, labels, groups=(group1, group2), scale=1.0)


def test_one_vs_all_rejects_a_missing_or_lonely_class():
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match="class 2 has no image"):
        distancing_targets("one_vs_all", logits, torch.tensor([0, 1, 0, 1]), cls=2, scale=1.0)
    with pytest.raises(ValueError, match="other than 0"):
        distancing_targets("one_vs_all", logits, torch.tensor([0, 0, 0, 0]), cls=0, scale=1.0)


def test_zero_spread_warns_that_nothing_moves():
    logits = torch.tensor([[1.0, 5.0], [2.0, 5.0]])
    with pytest.warns(RuntimeWarning, match="zero spread"):
        targets = distancing_targets("pair", logits, torch.tensor([0, 1]), pair=(0, 1), scale=1.0)
    assert targets[0, 1] == 5.0


def test_alpha_schedule_checks():
    assert check_alpha_schedule([0.5, 1, 1.5]) == (0.5, 1.0, 1.5)
    with pytest.raises(ValueError, match="empty"):
        check_alpha_schedule([])
    with pytest.raises(ValueError, match="positive"):
        check_alpha_schedule([0.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        check_alpha_schedule([-1.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        check_alpha_schedule([1.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        check_alpha_schedule([2.0, 1.0])


def test_scale_zero_is_the_control_without_distancing():
    # alpha = 0: the targets are the original logits, bit for bit (the support set of the distancing control)
    assert torch.equal(distancing_targets("pair", PAIR_LOGITS, PAIR_LABELS, pair=(0, 1), scale=0.0), PAIR_LOGITS)
    assert check_alpha_schedule([0, 0, 0]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="positive"):
        check_alpha_schedule([0.0, 1.0])  # zeros only as the whole schedule
