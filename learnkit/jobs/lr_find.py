"""The jobs of ``learnkit lr-find`` and ``learnkit fit-one-cycle --dry-run``: nothing is trained
for good and no checkpoint is written or changed; the result is numbers and a plot."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.jobs.setup import build_learner

if TYPE_CHECKING:
    from learnkit.jobs.config import RunConfig


def lr_find(
    data: str | Path,
    arch: str,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_it: int = 100,
    stop_div: bool = True,
    wd: Any = None,
    reporter: Any = None,
    **learner_options: Any,
) -> dict[str, Any]:
    """LR range test of ``arch`` on ``data``: the suggestions (steep, minimum, valley) and the plot.

    ``suggestion`` is the ``valley`` lr, the one to pass to ``fit-one-cycle --lr``. ``reporter``
    (the ``ProgressCallback`` protocol) sees every batch with the current lr and smoothed loss.
    """
    import math

    from learnkit.callbacks.progress import ProgressCallback
    from learnkit.errors import UsageError

    if not (math.isfinite(start_lr) and math.isfinite(end_lr) and 0 < start_lr < end_lr):
        raise UsageError(f"need 0 < --start-lr < --end-lr, got {start_lr:g} and {end_lr:g}")
    from learnkit.jobs.config import lr_value

    if wd is not None:
        wd = lr_value(wd, "--wd", allow_zero=True)
    learn = build_learner(data, arch, **learner_options)
    callbacks = [ProgressCallback(reporter)] if reporter is not None else []
    res = learn.lr_find(start_lr, end_lr, num_it, stop_div=stop_div, wd=wd, callbacks=callbacks)
    rec = learn.recorder
    skip_start = min(10, max(0, len(rec.lr_find_lrs) - 6))
    result = {
        **{k: float(v) for k, v in dict(res).items()},
        "suggestion": float(res["valley"]),
        "iterations": len(rec.lr_find_lrs),
    }
    try:
        plot = rec.plot(
            skip_start=skip_start, skip_end=min(5, max(0, len(rec.lr_find_lrs) - skip_start - 1)), marks=True
        )
    except OSError as exc:  # the numbers are the result; a plot that cannot be written is a warning
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        warnings.warn(f"could not write the plot in {Path(learn.path) / 'plots'}: {reason}", stacklevel=2)
        return {**result, "plot": None}
    return {**result, "plot": str(plot)}


def plan_one_cycle(config: RunConfig) -> dict[str, Any]:
    """What ``fit-one-cycle`` would do with ``config``, without training: lr and momentum per batch,
    and their plot (the Learner is the run's own, built by :func:`learnkit.jobs.setup.learner_for`)."""
    from learnkit.callbacks.one_cycle import one_cycle_plan
    from learnkit.jobs.config import lr_value
    from learnkit.jobs.setup import learner_for
    from learnkit.plots import new_figure, save_figure

    s = config.schedule
    learn = learner_for(config, config.runtime.device)
    trace = one_cycle_plan(learn, s.epochs, lr_value(s.lr), s.moms, s.div_factor, s.pct_start, s.final_div)
    fig, (ax_lr, ax_mom) = new_figure(1, 2, figsize=(12, 4))
    ax_lr.plot(trace.lrs)
    ax_lr.set_xlabel("iterations")
    ax_lr.set_ylabel("learning rate (last group)")
    ax_mom.plot(trace.moms)
    ax_mom.set_xlabel("iterations")
    ax_mom.set_ylabel("momentum")
    plot = save_figure(fig, Path(learn.path) / "plots" / "one_cycle_plan.png")
    peak = max(range(len(trace.lrs)), key=trace.lrs.__getitem__)
    return {
        "iterations": len(trace.lrs),
        "layer_groups": len(trace.group_lrs[0]) if trace.group_lrs else 0,
        "first_lr": trace.lrs[0],
        "peak_lr": trace.lrs[peak],
        "peak_iteration": peak,
        "last_lr": trace.lrs[-1],
        "first_group_lrs": trace.group_lrs[0],
        "moms": [trace.moms[0], min(trace.moms), trace.moms[-1]],
        "plot": str(plot),
    }
