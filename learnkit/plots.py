"""Saving figures: matplotlib with the Agg backend (no display needed), always to a PNG file."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def new_figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` on the Agg backend (never opens a window)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (folders created; written to a temp name, then renamed).

    Every text of the figure is drawn literally (no mathtext): a class name like ``$x$`` or
    ``a$b`` is data, and must neither crash the drawing nor turn into a formula."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from learnkit.atomic import write_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for text in fig.findobj(Text):  # class names are data: `$x$` is drawn as typed, never as math
        text.set_parse_math(False)
    try:
        write_atomically(path, lambda f: fig.savefig(f, dpi=dpi, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
