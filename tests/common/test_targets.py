"""The one normaliser of class indices."""

import numpy as np
import pytest
import torch

from gadlib.common.targets import class_indices


def test_an_int_a_sequence_an_array_and_a_tensor_give_n_int64_indices():
    for target in (2, [2, 2, 2], np.array([2, 2, 2], dtype=np.int32), torch.tensor(2), torch.full((3,), 2)):
        values = class_indices(target, 3, num_classes=3)
        assert values.dtype == torch.int64 and values.tolist() == [2, 2, 2] and values.is_contiguous()


@pytest.mark.parametrize(
    "target, num_classes, error, message",
    [
        (None, None, TypeError, "got None"),
        (1.0, None, ValueError, "integer class indices; got dtype torch.float32"),
        (torch.tensor([True, False, True]), None, ValueError, "dtype torch.bool"),
        ([0, 1], None, ValueError, r"one per image \(3\); got shape \(2,\)"),
        ([0, -1, 0], None, ValueError, r"target \[-1\] is negative"),
        ([0, 3, 5], 3, ValueError, r"target \[3, 5\] is out of range: the model has 3 outputs"),
    ],
)
def test_bad_indices_raise_naming_the_value(target, num_classes, error, message):
    with pytest.raises(error, match=message):
        class_indices(target, 3, num_classes=num_classes)


def test_the_name_is_in_the_message():
    with pytest.raises(ValueError, match=r"other \[4\] is out of range"):
        class_indices(4, 2, num_classes=2, name="other")
