import sys

import pytest
from tqdm.notebook import tqdm as widget_tqdm
from tqdm.std import tqdm as text_tqdm

from gadlib.common.progress import PROGRESS_ENV, progress_class


def test_text_bars_outside_a_kernel_and_when_asked(monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_class() is text_tqdm
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
