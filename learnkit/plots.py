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
    """Write ``fig`` as a PNG at ``path`` (folders created; written to a temp name, then renamed)."""
    import matplotlib.pyplot as plt

    from learnkit.atomic import write_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(path, lambda f: fig.savefig(f, dpi=dpi, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
