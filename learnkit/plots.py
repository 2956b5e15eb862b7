"""Figures: drawn on ``matplotlib.figure.Figure`` objects, never through pyplot's global state.

No function here calls ``matplotlib.use`` or opens a window: a notebook's or a script's own
backend stays as it was. A figure is always saved as a PNG (``save_figure``); in a Jupyter kernel
:func:`finish_figure` also shows it inline (as fastai v1's plots do), and with ``return_fig=True``
the caller gets the ``Figure`` itself.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def preload() -> None:
    """Import what a figure needs (matplotlib, its Agg canvas, the font list) on a daemon thread, so
    that plots drawn later (the command line's at the end of a fit) do not wait for it: about 0.6 s
    on a 2-core CPU, spent while an epoch trains (its work is in torch, outside the GIL)."""
    import threading

    def load() -> None:
        try:
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401
            from matplotlib import font_manager  # noqa: F401 - reads the font list once per process
        except Exception:  # noqa: BLE001 - drawing will import it again and say what is wrong
            pass

    threading.Thread(target=load, name="learnkit-plots-import", daemon=True).start()


def new_figure(*args: Any, figsize: Any = None, dpi: Any = None, **kwargs: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` as ``plt.subplots`` gives them, on a free-standing ``Figure`` (no backend
    switch, no window, nothing left in pyplot's list of open figures)."""
    from matplotlib.figure import Figure

    if in_notebook():
        _show_figures_as_png()
    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots(*args, **kwargs)


def _show_figures_as_png() -> None:
    """Let the notebook show a ``Figure`` (a cell's value, or ``display(fig)``) as a PNG.

    The inline backend registers that only once pyplot has drawn through it; learnkit draws no
    figure through pyplot, so it registers a PNG printer itself when there is none yet, leaving
    the backend alone.
    """
    from IPython import get_ipython
    from matplotlib.figure import Figure

    formatter = get_ipython().display_formatter.formatters["image/png"]
    try:
        formatter.lookup_by_type(Figure)
    except KeyError:
        formatter.for_type(Figure, _png_bytes)


def _png_bytes(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def save_figure(fig: Any, path: str | Path, dpi: int | None = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders created; written to a temp name, then renamed).

    Every text of the figure is drawn literally (no mathtext): a class name like ``$x$`` or
    ``a$b`` is data, and must neither crash the drawing nor turn into a formula."""
    from matplotlib.text import Text

    from learnkit.atomic import write_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for text in fig.findobj(Text):  # class names are data: `$x$` is drawn as typed, never as math
        text.set_parse_math(False)
    dpi = dpi or 100
    write_atomically(path, lambda f: fig.savefig(f, dpi=dpi, format="png", bbox_inches="tight"))
    return path


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel), where figures show inline."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def finish_figure(fig: Any, path: str | Path, dpi: int | None = 100, return_fig: bool | None = None) -> Any:
    """Save ``fig`` to ``path``; show it inline in a notebook; return the ``Figure`` with
    ``return_fig`` (fastai v1's keyword), else the PNG's path.

    With ``return_fig`` the notebook shows the returned figure itself (as the cell's value), so
    it is not displayed a second time here.
    """
    saved = save_figure(fig, path, dpi)
    if return_fig:
        return fig
    if in_notebook():
        from IPython.display import display

        display(fig)
    return saved
