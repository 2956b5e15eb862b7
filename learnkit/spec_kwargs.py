"""The keyword arguments a checkpoint's ``model_spec`` may carry: an allowlist per model family.

A checkpoint is data from anywhere, and its spec's ``kwargs`` reach a builder (torchvision's
model functions, timm's ``create_model``, a plugin's). So a checkpoint may only name the
arguments that shape the architecture, each with its type and range; any other key (a path, a
URL, a hub, a cache, a device, ``pretrained``, an unknown word) is refused, naming the key,
before any builder runs. The accepted keys of a spec are:

- its kind's own options (:data:`KIND_KWARGS`): a ``cnn``'s head (``cut``, ``lin_ftrs``, ``ps``,
  ``concat_pool``, ``bn_final``), a ``unet``'s decoder (``cut``, ``img_size``, ``blur``...);
- its arch's builder options: those its zoo entry declares as ``meta["kwargs"]`` (name ->
  :class:`Kwarg`). An entry that declares none takes none from a checkpoint. The built-ins
  declare theirs (``simple_cnn``, each torchvision family), the timm plugin its own, and a
  plugin does the same in the ``meta`` it gives :func:`learnkit.registry.register`::

      register("my_net", build, meta={"kwargs": {"width": Kwarg("int", 1, 1024)}})

This module imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TYPES = ("int", "float", "bool", "str")


@dataclass(frozen=True)
class Kwarg:
    """One keyword a checkpoint may give a builder.

    Args:
        type: ``"int"``, ``"float"``, ``"bool"`` or ``"str"``.
        low, high: the range of a number (inclusive).
        choices: the accepted strings (``type="str"``); ``None`` among them accepts a null.
        lengths: ``(min, max)``: a list of such values of that length is accepted too.
        scalar: a single value is accepted (``False`` with ``lengths``: only a list).
        nullable: ``None`` is accepted.
    """

    type: str
    low: float = -1e6
    high: float = 1e6
    choices: tuple[Any, ...] = ()
    lengths: tuple[int, int] | None = None
    scalar: bool = True
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        """``None`` when ``value`` is acceptable, else what it must be (one phrase)."""
        if value is None and (self.nullable or None in self.choices):
            return None
        if isinstance(value, list) and self.lengths is not None:
            low, high = self.lengths
            if low <= len(value) <= high and all(self._one(v) for v in value):
                return None
        elif self.scalar and self._one(value):
            return None
        return f"must be {self.describe()}"

    def _one(self, value: Any) -> bool:
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "str":
            return isinstance(value, str) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        return math.isfinite(value) and self.low <= value <= self.high

    def describe(self) -> str:
        """What the keyword accepts, in words (``an integer from 1 to 64``)."""
        if self.type == "bool":
            one = "true or false"
        elif self.type == "str":
            one = "one of " + ", ".join("null" if c is None else repr(c) for c in self.choices)
        else:
            kind = "an integer" if self.type == "int" else "a number"
            one = f"{kind} from {_num(self.low)} to {_num(self.high)}"
        if self.lengths is not None:
            many = f"a list of {self.lengths[0]} to {self.lengths[1]} such values"
            if self.lengths[0] == self.lengths[1]:
                many = f"a list of {self.lengths[0]} such values"
            one = f"{one} or {many}" if self.scalar else f"{many} ({one} each)"
        return f"{one} or null" if self.nullable else one

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"Kwarg type must be one of {', '.join(_TYPES)}, not {self.type!r}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


MAX_SIDE = 4096  # the largest side a spec may name (img_size), as the schema bounds ``size``
PROB = Kwarg("float", 0.0, 1.0)  # a dropout or drop-path rate
FLAG = Kwarg("bool")
CUT = Kwarg("int", -64, 64)
SIDE = Kwarg("int", 1, MAX_SIDE, lengths=(2, 2))  # a side, or (height, width)

# the model kinds' own options (learnkit.vision.models.MODEL_KINDS), before the arch's builder's
KIND_KWARGS: dict[str, dict[str, Kwarg]] = {
    "cnn": {
        "cut": CUT,
        "lin_ftrs": Kwarg("int", 1, 65536, lengths=(0, 8), scalar=False, nullable=True),
        "ps": Kwarg("float", 0.0, 1.0, lengths=(1, 9)),
        "concat_pool": FLAG,
        "bn_final": FLAG,
    },
    "plain": {},
    "unet": {
        "cut": CUT,
        "img_size": SIDE,
        "blur": FLAG,
        "blur_final": FLAG,
        "self_attention": FLAG,
        "y_range": Kwarg("float", lengths=(2, 2), scalar=False, nullable=True),
        "last_cross": FLAG,
        "bottle": FLAG,
        "norm_type": Kwarg("str", choices=(None, "none", "batch", "weight")),
    },
}


def declared_kwargs(entry: Any) -> dict[str, Kwarg]:
    """The builder keywords zoo ``entry`` declares (``meta["kwargs"]``); a declaration that is not
    a mapping of names to :class:`Kwarg` counts as none."""
    declared = getattr(entry, "meta", {}).get("kwargs")
    if not isinstance(declared, Mapping):
        return {}
    return {k: v for k, v in declared.items() if isinstance(k, str) and isinstance(v, Kwarg)}


def allowed_kwargs(kind: str, entry: Any) -> dict[str, Kwarg]:
    """Every keyword a ``kind`` spec of arch ``entry`` may carry: the kind's own, then the arch's."""
    return {**declared_kwargs(entry), **KIND_KWARGS.get(kind, {})}


def kwarg_problem(kind: str, entry: Any, key: Any, value: Any) -> str | None:
    """``None`` when a checkpoint may pass ``key=value`` to a ``kind`` spec of ``entry``, else why not."""
    allowed = allowed_kwargs(kind, entry)
    rule = allowed.get(key) if isinstance(key, str) else None
    if rule is None:
        takes = ", ".join(sorted(allowed)) or "none"
        return (
            f"not an option a checkpoint may give a {kind} {getattr(entry, 'name', '?')} "
            f"(only options that shape the architecture: {takes})"
        )
    return rule.problem(value)
