"""Progress bars chosen by ``$GADLIB_PROGRESS`` (``tqdm.auto`` picks widgets that saved notebooks cannot
show): ``log`` prints a few whole lines per bar (tools/run_notebook.py sets it for the pipeline's
notebooks), ``text`` and ``widgets`` force those bars, and ``auto`` (default) uses widgets in a Jupyter
kernel with ipywidgets, else text bars drawn only on a terminal.
"""

from __future__ import annotations

import math
import os
import sys
import time

from tqdm.std import tqdm as text_tqdm

PROGRESS_ENV = "GADLIB_PROGRESS"
PROGRESS_STYLES = ("auto", "text", "widgets", "log")
LOG_MIN_SECONDS = 30.0  # a quarter's line waits this long after the previous line (the end's never does)


class log_tqdm(text_tqdm):  # noqa: N801 - named like the tqdm classes it stands in for
    """A tqdm bar that writes whole lines (:meth:`log_line`), readable in a file: one when the work crosses a
    quarter at least :data:`LOG_MIN_SECONDS` after the previous line, and one at the close unless the last
    showed the final count. Lines go to standard output by default (a notebook shows standard error as
    warnings)."""

    monitor_interval = 0  # no monitor thread: lines come only from the bar's own updates
    log_min_seconds = LOG_MIN_SECONDS

    def __init__(self, *args, **kwargs):
        # set before tqdm's constructor, which displays the bar once (at 0%: no line)
        self._logged_quarter = 0
        self._logged_n: float | None = None
        self._logged_at = time.monotonic()
        if len(args) < 5:  # ``file`` is tqdm's fifth positional parameter
            kwargs.setdefault("file", sys.stdout)
        super().__init__(*args, **kwargs)

    def _quarter(self) -> int:
        """How many quarters of the total are done (0-4); 0 without a total."""
        return min(4, math.floor(4 * self.n / self.total)) if self.total else 0

    def log_line(self) -> str:
        """``desc: 40% 2/5 [00:12, postfix]``: the count and elapsed time, not the rate (it differs every run)."""
        elapsed = self.format_interval(self.format_dict["elapsed"])
        postfix = f", {self.postfix}" if self.postfix else ""
        prefix = f"{self.desc}: " if self.desc else ""
        if self.total:
            return f"{prefix}{100 * self.n / self.total:3.0f}% {self.n}/{self.total} [{elapsed}{postfix}]"
        return f"{prefix}{self.n} {self.unit} [{elapsed}{postfix}]"

    def _write_line(self) -> None:
        self.fp.write(self.log_line() + "\n")
        getattr(self.fp, "flush", lambda: None)()
        self._logged_quarter, self._logged_n, self._logged_at = self._quarter(), self.n, time.monotonic()

    def display(self, msg=None, pos=None) -> bool:
        """Write a line if a new quarter is done and the previous line is old enough; True if written."""
        if msg is not None:  # tqdm clearing the bar ('') or a custom message: nothing to log
            return False
        quarter = self._quarter()
        if quarter > self._logged_quarter and time.monotonic() - self._logged_at >= self.log_min_seconds:
            self._write_line()
            return True
        return False

    def close(self) -> None:
        """Write the final line (unless already written), then close without tqdm's clearing."""
        if not self.disable and self.n != self._logged_n:
            with self._lock:
                self._write_line()
        self.leave = False  # tqdm would otherwise redraw the bar and add a newline
        super().close()


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
    if style == "log":
        return log_tqdm
    if style == "text":
        return text_tqdm
    if style == "auto" and "ipykernel" not in sys.modules:
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
