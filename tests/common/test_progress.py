import io
import sys

import pytest
from tqdm.notebook import tqdm as widget_tqdm
from tqdm.std import tqdm as text_tqdm

from gadlib.common.progress import PROGRESS_ENV, TerminalTqdm, progress_class


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
