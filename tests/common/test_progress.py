import io
import sys

import pytest
from tqdm.notebook import tqdm as widget_tqdm
from tqdm.std import tqdm as text_tqdm

from gadlib.common.progress import PROGRESS_ENV, TerminalTqdm, log_tqdm, progress_class


def test_text_bars_outside_a_kernel_and_when_asked(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_class() is TerminalTqdm
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # as if imported by a Jupyter kernel
    monkeypatch.setenv(PROGRESS_ENV, "text")
    assert progress_class() is text_tqdm


def test_widget_bars_in_a_kernel_with_ipywidgets(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_class() is widget_tqdm
    assert progress_class("widgets") is widget_tqdm


def test_missing_ipywidgets_falls_back_to_text_unless_widgets_are_demanded(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    assert progress_class("auto") is text_tqdm
    with pytest.raises(ImportError, match="pip install ipywidgets, or set GADLIB_PROGRESS=text"):
        progress_class("widgets")


def test_unknown_style_is_named():
    with pytest.raises(ValueError, match="GADLIB_PROGRESS='bars' is not a progress style"):
        progress_class("bars")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_outside_a_kernel_bars_draw_on_a_terminal_only_unless_text_is_asked_for(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    for output, drawn in ((io.StringIO(), False), (_Terminal(), True)):  # a file or pipe, a terminal
        for _ in progress_class()(range(3), file=output, desc="work"):
            pass
        assert ("work" in output.getvalue()) == drawn
    for _ in progress_class()(range(3), file=(output := _Terminal()), disable=True):
        pass
    assert output.getvalue() == ""  # progress=False still turns a bar off
    monkeypatch.setenv(PROGRESS_ENV, "text")  # as the pipeline's stage runner sets it for its notebooks
    for _ in progress_class()(range(3), file=(output := io.StringIO()), desc="work"):
        pass
    assert "work" in output.getvalue()


def test_log_style_is_chosen_by_name(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # even inside a kernel: the pipeline's notebooks
    monkeypatch.setenv(PROGRESS_ENV, "log")
    assert progress_class() is log_tqdm
    assert progress_class("LOG") is log_tqdm


def test_log_bars_write_one_plain_line_when_quick():
    out = io.StringIO()
    for _ in log_tqdm(range(1000), desc="quick", file=out):
        pass
    for _ in log_tqdm(range(3), desc="transient", file=out, leave=False):
        pass
    for _ in log_tqdm(range(3), desc="off", file=out, disable=True):
        pass
    lines = out.getvalue().split("\n")
    assert lines[-1] == ""  # every line ends
    assert [line.split(":")[0] for line in lines[:-1]] == ["quick", "transient"]
    assert "1000/1000" in lines[0] and "3/3" in lines[1]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()  # no carriage return, no cursor move


def _log_lines_of_a_full_run(total: int, desc: str) -> list[str]:
    """The lines a log bar writes while counting to ``total`` one step at a time."""
    out = io.StringIO()
    bar = log_tqdm(total=total, desc=desc, file=out, mininterval=0)
    for _ in range(total):
        bar.update(1)
    bar.close()
    return out.getvalue().splitlines()


def test_log_bars_write_at_most_a_line_per_quarter_and_one_at_the_end(monkeypatch):
    monkeypatch.setattr(log_tqdm, "log_min_seconds", 0.0)
    lines = _log_lines_of_a_full_run(100, "long")
    assert [line.split()[1] for line in lines] == ["25%", "50%", "75%", "100%"]
    assert lines[-1] == "long: 100% 100/100 [00:00]"  # no rate: it differs at every run

    out = io.StringIO()
    bar = log_tqdm(total=8, desc="stopped early", file=out, mininterval=0)
    bar.update(4)
    bar.update(1)
    bar.close()  # the end is written even short of the total (early stopping)
    assert [line.split()[2] for line in out.getvalue().splitlines()] == ["50%", "62%"]

    out = io.StringIO()
    for _ in log_tqdm(iter(range(50)), desc="no total", file=out, mininterval=0):
        pass
    assert out.getvalue().splitlines() == ["no total: 50 it [00:00]"]


def test_log_bars_wait_between_lines(monkeypatch):
    monkeypatch.setattr(log_tqdm, "log_min_seconds", 3600.0)
    assert len(_log_lines_of_a_full_run(4, "slow")) == 1  # only the end: no quarter came an hour after the start


def test_log_bars_write_to_standard_output(capsys):
    for _ in log_tqdm(range(3), desc="info"):
        pass
    captured = capsys.readouterr()
    assert captured.out.startswith("info: 100%") and captured.err == ""
