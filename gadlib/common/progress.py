"""Progress bars: widgets in a JupyterLab kernel, text everywhere else, and never a warning.

``tqdm.auto`` warns ("IProgress not found") in a kernel without ipywidgets and picks widgets in
papermill runs, whose saved notebooks cannot show them. Here the choice is explicit: the
environment variable ``GADLIB_PROGRESS`` = ``text`` forces text bars (the pipeline's stage runner
sets it for the notebooks it executes), ``widgets`` asks for widget bars, and ``auto`` (the default)
uses widgets inside a Jupyter kernel that has ipywidgets, and otherwise text bars that draw only on a
terminal: a plain script whose output goes to a file or a pipe prints no bar (set
``GADLIB_PROGRESS=text`` to have them there too).
"""

from __future__ import annotations

import os
import sys

from tqdm.std import tqdm as text_tqdm

PROGRESS_ENV = "GADLIB_PROGRESS"
PROGRESS_STYLES = ("auto", "text", "widgets")


class TerminalTqdm(text_tqdm):
    """Text bars that draw only when their output is a terminal (tqdm's ``disable=None``)."""

    def __init__(self, *args, **kwargs):
        if not kwargs.get("disable"):
            kwargs["disable"] = None
        super().__init__(*args, **kwargs)


def progress_class(style: str | None = None) -> type[text_tqdm]:
    """The tqdm class for ``style`` (default: ``$GADLIB_PROGRESS``, else ``"auto"``)."""
    style = (style or os.environ.get(PROGRESS_ENV) or "auto").strip().lower()
    if style not in PROGRESS_STYLES:
        raise ValueError(f"{PROGRESS_ENV}={style!r} is not a progress style; use one of {PROGRESS_STYLES}")
    in_kernel = "ipykernel" in sys.modules
    if style == "text":
        return text_tqdm
    if style == "auto" and not in_kernel:
        return TerminalTqdm
    try:
        import ipywidgets  # noqa: F401  (tqdm.notebook needs it to draw)
        from tqdm.notebook import tqdm as widget_tqdm
    except ImportError:
        if style == "widgets":
            raise ImportError(
                f"widget progress bars need ipywidgets: pip install ipywidgets, or set {PROGRESS_ENV}=text"
            ) from None
        return text_tqdm
    return widget_tqdm


tqdm = progress_class()
