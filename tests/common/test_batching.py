"""The one batched loop that halves its batch when a pass runs out of memory."""

import warnings

import pytest

from gadlib.common.batching import batch_results, is_out_of_memory
from tests.out_of_memory import OUT_OF_MEMORY


def squares(limit: int, tried: list[dict]):
    """compute(start, sizes) over items 0.., running out of memory above ``limit`` items per batch."""

    def compute(start, sizes):
        tried.append(dict(sizes))
        stop = min(start + sizes["batch_size"], 10)
        if stop - start > limit:
            raise OUT_OF_MEMORY("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return stop, [i * i for i in range(start, stop)]

    return compute


def test_batches_cover_every_item_in_order_and_halve_all_sizes_on_out_of_memory():
    tried, sizes = [], {"batch_size": 8, "internal_batch_size": 6, "unused": None}
    with pytest.warns(RuntimeWarning) as record:
        batches = list(batch_results(squares(3, tried), 10, sizes, during="a test"))
    assert [value for _, _, result in batches for value in result] == [i * i for i in range(10)]
    assert [(start, stop) for start, stop, _ in batches] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert sizes == {"batch_size": 2, "internal_batch_size": 1, "unused": None}  # kept for the caller
    assert [str(w.message) for w in record] == [
        "out of memory during a test with batch_size=8, internal_batch_size=6; retrying with batch_size=4, "
        "internal_batch_size=3",
        "out of memory during a test with batch_size=4, internal_batch_size=3; retrying with batch_size=2, "
        "internal_batch_size=1",
    ]
    assert record[0].filename == __file__  # stacklevel=1: the function that iterates


def test_out_of_memory_at_size_one_and_other_errors_are_raised():
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match="out of memory"):
        list(batch_results(squares(0, []), 10, {"batch_size": 4}, during="a test"))

    def broken(start, sizes):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="shapes"):
            list(batch_results(broken, 10, {"batch_size": 4}, during="a test"))


def test_is_out_of_memory_reads_the_type_and_the_message():
    assert is_out_of_memory(OUT_OF_MEMORY("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate"))
    assert not is_out_of_memory(RuntimeError("shapes cannot be multiplied"))
