"""Learning-rate suggestions from an LR-finder curve: pure functions of ``(lrs, losses)``.

Each takes the lrs (increasing, usually geometric) and the smoothed losses of an LR range test and
returns one lr. :func:`suggest_lrs` trims the curve's noisy start and diverging end first, then
gives all of them by name. No torch, no state: test them on any curve.

Example:
    >>> lrs = [10 ** (i / 10 - 5) for i in range(60)]
    >>> losses = [2.0 - i / 40 if i < 40 else 1.0 + (i - 40) / 5 for i in range(60)]
    >>> round(minimum(lrs, losses), 8)  # the lowest loss is at lr 0.1
    0.01
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["SuggestedLRs", "minimum", "steep", "suggest_lrs", "trim_curve", "valley"]


def _check(lrs: Sequence[float], losses: Sequence[float]) -> None:
    if len(lrs) != len(losses) or not lrs:
        raise ValueError(f"need as many lrs as losses, at least one (got {len(lrs)} and {len(losses)})")


def _finite(lrs: Sequence[float], losses: Sequence[float]) -> tuple[list[float], list[float]]:
    """The points of the curve with a finite loss (a diverged run ends in inf or NaN)."""
    pairs = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    if not pairs:
        raise ValueError("the curve has no finite loss")
    return [p[0] for p in pairs], [p[1] for p in pairs]


def trim_curve(
    lrs: Sequence[float], losses: Sequence[float], skip_start: int = 10, skip_end: int = 5
) -> tuple[list[float], list[float]]:
    """The curve without its first ``skip_start`` and last ``skip_end`` points.

    A curve too short for that keeps what it can: first the trimmed end is given back, then the
    start, so at least ``min(3, len)`` points remain.

    >>> trim_curve(list(range(20)), list(range(20)))[0]
    [10, 11, 12, 13, 14]
    >>> trim_curve(list(range(6)), list(range(6)))[0]
    [3, 4, 5]
    """
    _check(lrs, losses)
    n = len(lrs)
    keep = min(3, n)
    end = max(n - max(skip_end, 0), 0)
    start = min(max(skip_start, 0), n)
    if end - start < keep:
        end = n
    if end - start < keep:
        start = end - keep
    return list(lrs[start:end]), list(losses[start:end])


def _slopes(lrs: Sequence[float], losses: Sequence[float], window: int | None) -> list[float]:
    """Slope of the loss against log(lr) at each point, over ``window`` points on each side.

    ``window=1`` is central differences (one-sided at the ends), as ``numpy.gradient`` takes them;
    the default, ``len // 20`` (at least 1), spans enough points that the jitter of a flat stretch
    cannot outdo a real descent.
    """
    n = len(lrs)
    w = max(1, n // 20) if window is None else max(1, int(window))
    x = [math.log(lr) for lr in lrs]
    slopes = []
    for i in range(n):
        lo, hi = max(i - w, 0), min(i + w, n - 1)
        slopes.append((losses[hi] - losses[lo]) / (x[hi] - x[lo]) if x[hi] != x[lo] else 0.0)
    return slopes


def steep(lrs: Sequence[float], losses: Sequence[float], window: int | None = None) -> float:
    """The lr where the loss falls fastest: the most negative slope of loss against log(lr).

    Args:
        lrs, losses: the curve.
        window: slopes are taken over this many points on each side (default ``len // 20``, at
            least 1; 1 is plain central differences).

    >>> steep([1e-3, 1e-2, 1e-1, 1.0], [3.0, 2.9, 1.5, 1.45])
    0.01
    """
    _check(lrs, losses)
    lrs, losses = _finite(lrs, losses)
    if len(lrs) == 1:
        return float(lrs[0])
    slopes = _slopes(lrs, losses, window)
    return float(lrs[min(range(len(slopes)), key=slopes.__getitem__)])


def minimum(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """A tenth of the lr at the lowest loss (the minimum itself is already too high to train at).

    >>> minimum([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0])
    0.001
    """
    _check(lrs, losses)
    lrs, losses = _finite(lrs, losses)
    return float(lrs[min(range(len(losses)), key=losses.__getitem__)] / 10)


def valley(lrs: Sequence[float], losses: Sequence[float], window: int | None = None) -> float:
    """The middle of the longest descending stretch of the curve (after fastai's ``valley``).

    The stretch is the longest run of consecutive points where the loss falls, its slope taken as
    :func:`steep` takes it (over ``window`` points each side, so one bump does not cut a descent
    and a jittering flat stretch does not make one); the suggestion is the lr halfway along it (by
    index: the geometric middle for an LR finder's curve). A curve that never falls gives its
    lowest point.

    >>> valley([1, 2, 3, 4, 5, 6, 7], [5.0, 4.0, 3.0, 2.0, 1.0, 1.5, 3.0], window=1)
    3.0
    """
    _check(lrs, losses)
    lrs, losses = _finite(lrs, losses)
    n = len(lrs)
    if n == 1:
        return float(lrs[0])
    falling = [s < 0 for s in _slopes(lrs, losses, window)]
    best_start, best_len, i = None, 0, 0
    while i < n:
        if not falling[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and falling[j + 1]:
            j += 1
        if j - i + 1 > best_len:
            best_start, best_len = i, j - i + 1
        i = j + 1
    if best_start is None:
        return float(lrs[min(range(n), key=losses.__getitem__)])
    return float(lrs[best_start + (best_len - 1) // 2])


@dataclass(frozen=True)
class SuggestedLRs(Mapping):
    """The suggestions of an LR range test, by name: ``res.valley`` or ``res["valley"]``.

    ``valley`` is the one to start from (fastai's default); ``steep`` is usually a little lower,
    ``minimum`` (a tenth of the lr at the lowest loss) an upper bound. ``dict(res)`` or
    :meth:`to_dict` gives them as a plain dict.
    """

    steep: float
    minimum: float
    valley: float

    def __getitem__(self, key: str) -> float:
        if key not in ("steep", "minimum", "valley"):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(("steep", "minimum", "valley"))

    def __len__(self) -> int:
        return 3

    @property
    def lr(self) -> float:
        """The suggestion to use: ``valley``."""
        return self.valley

    def to_dict(self) -> dict[str, float]:
        return {"steep": self.steep, "minimum": self.minimum, "valley": self.valley}


def suggest_lrs(
    lrs: Sequence[float], losses: Sequence[float], skip_start: int = 10, skip_end: int = 5
) -> SuggestedLRs:
    """All suggestions over the trimmed curve (see :func:`trim_curve`).

    >>> lrs = [10 ** (i / 10 - 5) for i in range(60)]
    >>> losses = [2.0 - i / 40 if i < 40 else 1.0 + (i - 40) / 5 for i in range(60)]
    >>> res = suggest_lrs(lrs, losses)
    >>> round(res.minimum, 8), round(res.valley, 8)
    (0.01, 0.00251189)
    """
    lrs, losses = trim_curve(lrs, losses, skip_start, skip_end)
    return SuggestedLRs(
        steep=float(steep(lrs, losses)), minimum=minimum(lrs, losses), valley=float(valley(lrs, losses))
    )
