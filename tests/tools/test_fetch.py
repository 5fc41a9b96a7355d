"""`make data` (tools/fetch.py): obtaining the raw Fashion-MNIST files (the Debian package's folder, apt,
never overwriting a present file), and check_pin against a fake `dvc`: clean, not yet in the cache
(committed), modified (refused)."""

from __future__ import annotations

import json
import subprocess

import pytest

from gadlib.data.datasets import FASHION_MNIST_FILES, DataError
from tests.fixtures import ROOT, snapshot
from tools import fetch

OUT = "data/fashion-mnist"
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"


# --------------------------------------------------------------------------- obtaining the raw files
def _fake_system_dir(path):
    path.mkdir()
    for i, name in enumerate(FASHION_MNIST_FILES):
        (path / name).write_bytes(bytes([i]) * 100 + name.encode())
    return path


def test_obtain_copies_the_system_files_byte_for_byte(tmp_path):
    system = _fake_system_dir(tmp_path / "system")
    source = fetch.obtain_fashion_mnist(tmp_path / "dest", system_dir=system, use_apt=False, use_download=False)
    assert "Debian package" in source
    for name in FASHION_MNIST_FILES:
        assert (tmp_path / "dest" / name).read_bytes() == (system / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == sorted(FASHION_MNIST_FILES)


def test_obtain_never_overwrites_a_present_file(tmp_path):
    system = _fake_system_dir(tmp_path / "system")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / TRAIN_IMAGES).write_bytes(b"mine")
    fetch.obtain_fashion_mnist(dest, system_dir=system, use_apt=False, use_download=False)
    assert (dest / TRAIN_IMAGES).read_bytes() == b"mine"
    assert (dest / TRAIN_LABELS).read_bytes() == (system / TRAIN_LABELS).read_bytes()
    # All four present: nothing is read from anywhere, even with no source at all.
    before = snapshot(dest)
    assert (
        fetch.obtain_fashion_mnist(dest, system_dir=tmp_path / "none", use_apt=False, use_download=False)
        == "already present"
    )
    assert snapshot(dest) == before


def test_obtain_without_any_source_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist") as err:
        fetch.obtain_fashion_mnist(tmp_path / "dest", system_dir=tmp_path / "none", use_apt=False, use_download=False)
    assert str(tmp_path / "dest") in str(err.value)
    assert not (tmp_path / "dest").exists()


class FakeApt:
    """Stands in for subprocess.run of apt-get: records the commands, answers with the given results."""

    def __init__(self, *results: tuple[int, str]):
        self.results, self.commands = list(results), []

    def __call__(self, cmd, **kwargs):
        self.commands.append(cmd)
        code, stderr = self.results.pop(0)
        return subprocess.CompletedProcess(cmd, code, stdout="", stderr=stderr)


LOCKED = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)\n"


def test_apt_waits_a_bounded_time_for_the_lock_and_its_error_reaches_the_message(tmp_path, monkeypatch):
    apt = FakeApt((0, ""), (100, LOCKED))
    monkeypatch.setattr(fetch.subprocess, "run", apt)
    monkeypatch.setattr(fetch.shutil, "which", lambda name: f"/usr/bin/{name}")
    reported = []
    with pytest.raises(DataError) as err:
        fetch.obtain_fashion_mnist(
            tmp_path / "dest", system_dir=tmp_path / "none", use_download=False, report=reported.append
        )
    assert [cmd[1:3] for cmd in apt.commands] == [["-o", "DPkg::Lock::Timeout=120"]] * 2
    assert [cmd[3] for cmd in apt.commands] == ["update", "install"]
    message = str(err.value)
    assert "install -y -qq dataset-fashion-mnist` failed (exit 100)" in message
    assert "It is held by process 4242 (apt-get)" in message and "\n" not in message
    assert reported and "waits up to 120 s" in reported[0]


def test_a_failed_index_update_does_not_stop_the_install(monkeypatch):
    apt = FakeApt((100, "W: Failed to fetch http://example.invalid/dists"), (0, ""))
    monkeypatch.setattr(fetch.subprocess, "run", apt)
    assert fetch.install_debian_package("dataset-fashion-mnist", lock_timeout=5) is None
    assert "DPkg::Lock::Timeout=5" in apt.commands[1]

    apt = FakeApt((100, "W: Failed to fetch"), (100, "E: Unable to locate package dataset-fashion-mnist"))
    monkeypatch.setattr(fetch.subprocess, "run", apt)
    failure = fetch.install_debian_package("dataset-fashion-mnist")
    assert "update -qq` failed (exit 100): W: Failed to fetch" in failure
    assert "E: Unable to locate package dataset-fashion-mnist" in failure


def test_main_fills_the_folder_params_yaml_names_in_the_project_it_runs_in(project_dir, monkeypatch, capsys):
    obtained = []
    monkeypatch.setattr(fetch, "obtain_fashion_mnist", lambda dest, report: obtained.append(dest) or "already present")
    monkeypatch.setattr(fetch, "verify_fashion_mnist", lambda dest: None)
    monkeypatch.setattr(fetch.shutil, "which", lambda name: None)  # no dvc: the pin is not checked
    assert fetch.main() == 0
    assert obtained == [project_dir / "data" / "fashion-mnist"]  # data.fashion_mnist_dir, in this project
    assert capsys.readouterr().out == (
        "Fashion-MNIST in data/fashion-mnist: already present; content verified; pin not checked (dvc not installed)\n"
    )


def test_main_reports_a_data_error_in_one_line(project_dir, monkeypatch, capsys):
    def unavailable(dest, report):
        raise DataError("Fashion-MNIST is not available: no source worked")

    monkeypatch.setattr(fetch, "obtain_fashion_mnist", unavailable)
    assert fetch.main() == 1
    assert capsys.readouterr().err == "error: Fashion-MNIST is not available: no source worked\n"


# --------------------------------------------------------------------------- the pin in data.dvc
class FakeDvc:
    """Stands in for subprocess.run: answers `dvc status --json` with a given status, records calls."""

    def __init__(self, status: dict, returncode: int = 0):
        self.status, self.returncode, self.calls, self.commands = status, returncode, [], []

    def __call__(self, cmd, cwd=None, **kwargs):
        self.calls.append(cmd[1])
        self.commands.append((cmd, cwd))
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


def test_the_default_pin_file_is_data_dvc_in_the_working_directory(monkeypatch, pinned):
    monkeypatch.chdir(pinned.parent)
    fake = use(monkeypatch, {"data.dvc": [{"changed outs": {OUT: "not in cache"}}]})
    assert fetch.check_pin() == "clean (added to DVC's cache)"  # hashed data/fashion-mnist here, as pinned
    assert [cmd[-1] for cmd, _ in fake.commands] == ["data.dvc", "data.dvc"]
    (pinned.parent / OUT / "b.gz").write_bytes(b"edited")
    with pytest.raises(DataError, match="'modified'"):
        fetch.check_pin()


def test_not_in_cache_is_committed_when_the_content_matches_the_pin(monkeypatch, pinned):
    fake = use(monkeypatch, {"data.dvc": [{"changed outs": {OUT: "not in cache"}}]})
    assert fetch.check_pin(pin_file=pinned) == "clean (added to DVC's cache)"
    assert fake.calls == ["status", "commit"]
    assert all(cwd == pinned.parent for _, cwd in fake.commands)  # dvc runs beside the pin file


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
    pins = fetch.pinned_hashes(ROOT / "data.dvc")
    folder = ROOT / OUT
    if not folder.is_dir():
        pytest.skip("data/fashion-mnist not obtained")
    assert fetch.dvc_md5(folder) == pins[OUT]
