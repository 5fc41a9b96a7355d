import pytest
import torch
from torch import nn

from gadlib.models.checkpoints import load_checkpoint, save_checkpoint, save_torch_state


class _RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, "w"): a stand-in for arbitrary code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_restores_weights_and_meta(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, {"alpha": 0.5, "history": [1.0, 0.5], "name": "support_1"})
    restored = nn.Linear(3, 2)
    state_dict, meta = load_checkpoint(path, restored)
    assert torch.equal(restored.weight, model.weight) and torch.equal(restored.bias, model.bias)
    assert meta == {"alpha": 0.5, "history": [1.0, 0.5], "name": "support_1"}
    assert set(state_dict) == {"weight", "bias"}
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_a_state_dict_can_be_saved_directly(tmp_path):
    state = {"weight": torch.ones(2, 2)}
    save_checkpoint(tmp_path / "m.pt", state)
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert torch.equal(loaded["weight"], state["weight"]) and meta == {}


def test_weights_that_do_not_fit_the_model_raise(tmp_path):
    save_checkpoint(tmp_path / "m.pt", nn.Linear(3, 2))
    with pytest.raises(ValueError, match="do not fit the given model"):
        load_checkpoint(tmp_path / "m.pt", nn.Linear(3, 5))


def test_a_file_that_runs_code_when_unpickled_is_refused(tmp_path):
    unsafe_marker, safe_marker = tmp_path / "unsafe_ran", tmp_path / "safe_ran"
    # Prove the crafted file really runs code when loaded without weights_only ...
    torch.save({"state_dict": _RunsCodeWhenUnpickled(unsafe_marker), "meta": {}}, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)
    assert unsafe_marker.exists()
    # ... and that load_checkpoint refuses the same kind of file without running it.
    torch.save({"state_dict": _RunsCodeWhenUnpickled(safe_marker), "meta": {}}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refused to load"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not safe_marker.exists()


def test_missing_file_names_the_path_and_its_creator(tmp_path):
    path = tmp_path / "classifier.pt"
    with pytest.raises(FileNotFoundError, match="the train_classifier stage") as info:
        load_checkpoint(path, created_by="the train_classifier stage")
    assert str(path) in str(info.value)


def test_garbage_and_foreign_files_raise_clear_errors(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_checkpoint(tmp_path / "garbage.pt")
    save_torch_state(tmp_path / "other.pt", {"model": {}, "epoch": 3})
    with pytest.raises(ValueError, match="not a model checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_save_refuses_what_is_not_a_model(tmp_path):
    with pytest.raises(TypeError, match="nn.Module or a state dict"):
        save_checkpoint(tmp_path / "m.pt", [torch.ones(1)])


def test_the_same_weights_give_the_same_bytes_whatever_the_file_name(tmp_path):
    # DVC hashes the files: a re-run that trains the same weights must not show up as a change.
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "classifier.pt", model, meta={"epochs": 1})
    save_checkpoint(tmp_path / "other_name.pt", model, meta={"epochs": 1})
    save_checkpoint(tmp_path / "changed.pt", model, meta={"epochs": 2})
    assert (tmp_path / "classifier.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
    assert (tmp_path / "classifier.pt").read_bytes() != (tmp_path / "changed.pt").read_bytes()
