"""Checkpoints and arrays are read without running code from the file.

Each crafted file carries a payload that, if unpickled, writes a marker file; the test first shows the
payload is live (a plain unpickling runs it), then that the pipeline's loaders refuse the file with
an error naming it, and that the marker was never written.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gadlib.common.atomic import load_arrays, save_arrays
from gadlib.data.prepared import load_prepared, save_prepared
from gadlib.method import support
from gadlib.models.checkpoints import load_checkpoint, save_checkpoint
from gadlib.project.classifier import load_classifier, new_classifier
from gadlib.project.params import validate_params
from gadlib.project.paths import ExperimentPaths
from gadlib.project.supports import SupportSet, load_supports
from tests.fixtures import SMALL_CNN_EXPERIMENT, tiny_prepared_data


class Payload:
    """Unpickling this runs ``exec(code)``: what a malicious checkpoint or array file would do."""

    def __init__(self, marker):
        self.code = f"open({str(marker)!r}, 'w').write('code from the file ran')"

    def __reduce__(self):
        return (exec, (self.code,))


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "payload_ran"


@pytest.fixture
def experiment(params, project_dir):
    """params with one small_cnn experiment whose files live in an empty project under tmp_path."""
    params["experiments"] = {"exp": dict(SMALL_CNN_EXPERIMENT)}
    return validate_params(params)


def assert_payload_is_live(path, marker, load):
    """The crafted file really runs code when unpickled: the refusal below is what prevents it."""
    load(path)
    assert marker.read_text() == "code from the file ran"
    marker.unlink()


def test_crafted_classifier_checkpoint_is_refused_by_the_pipeline_loader(experiment, tmp_path, marker):
    prepared = tiny_prepared_data()
    path = ExperimentPaths("exp").classifier
    model = new_classifier(experiment, "exp", prepared)
    save_checkpoint(path, model, {"experiment": "exp"})
    assert load_classifier(experiment, "exp", prepared) is not None  # the sound file loads

    state = torch.load(path, weights_only=True)
    state["meta"]["note"] = Payload(marker)
    torch.save(state, path)
    assert_payload_is_live(path, marker, lambda p: torch.load(p, weights_only=False))

    with pytest.raises(ValueError, match=rf"refused to load {path}: it holds objects other than tensors"):
        load_classifier(experiment, "exp", prepared)
    assert not marker.exists()


def test_crafted_support_checkpoint_is_refused(experiment, tmp_path, marker):
    original = new_classifier(experiment, "exp", tiny_prepared_data())
    torch.save({"state_dict": Payload(marker), "meta": {"alpha": 0.5}}, tmp_path / "support_1.pt")
    with pytest.raises(ValueError, match="refused to load .*support_1.pt"):
        support.load_support_models(tmp_path, original, [0.5])
    with pytest.raises(ValueError, match="refused to load"):
        load_checkpoint(tmp_path / "support_1.pt")
    # the loader notebooks/04_attribute.ipynb calls, on the experiment's support folder
    folder = ExperimentPaths("exp").support_dir / "pair"
    folder.mkdir(parents=True)
    torch.save({"state_dict": Payload(marker), "meta": {"alpha": 0.5}}, folder / "support_1.pt")
    with pytest.raises(ValueError, match="refused to load .*/pair/support_1.pt"):
        load_supports(experiment, "exp", original, SupportSet("pair", "pair", pair=(0, 1)))
    assert not marker.exists()


def test_plain_pickle_in_place_of_a_checkpoint_is_refused(tmp_path, marker):
    path = tmp_path / "classifier.pt"
    path.write_bytes(pickle.dumps({"state_dict": Payload(marker), "meta": {}}, protocol=2))
    assert_payload_is_live(path, marker, lambda p: pickle.loads(p.read_bytes()))
    with pytest.raises(ValueError, match="refused to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_object_array_in_an_npz_is_refused(tmp_path, marker):
    path = tmp_path / "arrays.npz"
    np.savez(path, fine=np.arange(3), payload=np.array([Payload(marker)], dtype=object))
    assert_payload_is_live(path, marker, lambda p: np.load(p, allow_pickle=True)["payload"])
    with pytest.raises(ValueError, match=rf"refused to load array 'payload' of {path}: it holds Python"):
        load_arrays(path)
    assert not marker.exists()


def test_prepared_data_with_an_object_array_is_refused(tmp_path, marker):
    path = tmp_path / "prepared.npz"
    save_prepared(path, tiny_prepared_data())
    arrays = load_arrays(path)
    arrays["class_names"] = np.array([Payload(marker), "Shirt"], dtype=object)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"refused to load array 'class_names' of .*prepared\.npz"):
        load_prepared(path)
    assert not marker.exists()


def test_pickle_in_place_of_an_npz_is_refused(tmp_path, marker):
    path = tmp_path / "prepared.npz"
    path.write_bytes(pickle.dumps({"train_images": Payload(marker)}))
    with pytest.raises(ValueError, match=r"refused to load .*prepared\.npz: it is not an \.npz archive"):
        load_prepared(path)
    assert not marker.exists()


def test_object_arrays_are_never_written(tmp_path):
    with pytest.raises(TypeError, match="array 'names' has dtype object"):
        save_arrays(tmp_path / "a.npz", names=np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []
