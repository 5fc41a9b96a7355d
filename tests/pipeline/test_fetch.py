"""fetch.check_pin against a fake `dvc`: clean, not yet in the cache (committed), modified (refused)."""

from __future__ import annotations

import json
import subprocess

import pytest

from gadlib.data.datasets import DataError
from gadlib.pipeline import fetch

OUT = "data/fashion-mnist"


class FakeDvc:
    """Stands in for subprocess.run: answers `dvc status --json` with a given status, records calls."""

    def __init__(self, status: dict, returncode: int = 0):
        self.status, self.returncode, self.calls = status, returncode, []

    def __call__(self, cmd, cwd=None, **kwargs):
        self.calls.append(cmd[1])
        stdout = json.dumps(self.status) if cmd[1] == "status" else ""
        return subprocess.CompletedProcess(cmd, self.returncode, stdout=stdout, stderr="dvc: it broke")


@pytest.fixture
def pinned(tmp_path):
    """A repository folder with data/fashion-mnist and a data.dvc pinning its present content."""
    folder = tmp_path / OUT
    folder.mkdir(parents=True)
    (folder / "a.gz").write_bytes(b"first")
    (folder / "b.gz").write_bytes(b"second")
    pin = tmp_path / "data.dvc"
    pin.write_text(f"outs:\n- md5: {fetch.dvc_md5(folder)}\n  nfiles: 2\n  hash: md5\n  path: {OUT}\n")
    return pin


def use(monkeypatch, status: dict, returncode: int = 0) -> FakeDvc:
    fake = FakeDvc(status, returncode)
    monkeypatch.setattr(fetch.subprocess, "run", fake)
    return fake


def test_clean(monkeypatch, pinned):
    fake = use(monkeypatch, {})
    assert fetch.check_pin(pin_file=pinned) == "clean"
    assert fake.calls == ["status"]


def test_not_in_cache_is_committed_when_the_content_matches_the_pin(monkeypatch, pinned):
    fake = use(monkeypatch, {"data.dvc": [{"changed outs": {OUT: "not in cache"}}]})
    assert fetch.check_pin(pin_file=pinned) == "clean (added to DVC's cache)"
    assert fake.calls == ["status", "commit"]


def test_not_in_cache_but_changed_is_refused(monkeypatch, pinned):
    # With an empty cache DVC says only "not in cache", even for a modified file.
    (pinned.parent / OUT / "b.gz").write_bytes(b"edited")
    fake = use(monkeypatch, {"data.dvc": [{"changed outs": {OUT: "not in cache"}}]})
    with pytest.raises(DataError, match=f"differs from its pin.*'{OUT}': 'modified'.*dvc checkout data.dvc"):
        fetch.check_pin(pin_file=pinned)
    assert fake.calls == ["status"]


def test_modified_is_refused(monkeypatch, pinned):
    fake = use(monkeypatch, {"data.dvc": [{"changed outs": {OUT: "modified"}}]})
    with pytest.raises(DataError, match=f"raw data differs from its pin in data.dvc: .*{OUT}.*make data"):
        fetch.check_pin(pin_file=pinned)
    assert fake.calls == ["status"]


def test_an_edited_pin_file_is_refused(monkeypatch, pinned):
    use(monkeypatch, {"data.dvc": ["changed checksum"]})
    with pytest.raises(DataError, match="changed checksum"):
        fetch.check_pin(pin_file=pinned)


def test_dvc_failures_are_reported(monkeypatch, pinned):
    use(monkeypatch, {}, returncode=1)
    with pytest.raises(DataError, match="`dvc status data.dvc` failed: dvc: it broke"):
        fetch.check_pin(pin_file=pinned)


def test_dvc_not_installed(pinned):
    with pytest.raises(DataError, match="cannot run .*install DVC"):
        fetch.check_pin(dvc=str(pinned.parent / "no-dvc-here"), pin_file=pinned)


def test_dvc_md5_matches_dvcs_own_hash_of_the_real_data():
    pins = fetch.pinned_hashes(fetch.PIN_FILE)
    folder = fetch.ROOT / OUT
    if not folder.is_dir():
        pytest.skip("data/fashion-mnist not obtained")
    assert fetch.dvc_md5(folder) == pins[OUT]
