"""The model-zoo registry: one table from arch names to builders, filled by plugins.

An arch is registered with :func:`register` (a call or a decorator). Plugins are modules named by
entry points of the group ``learnkit.zoo``; importing one registers its archs, as pytest's
``pytest11`` plugins do. They load lazily, on the first lookup, and a plugin that fails is reported
(a warning and :func:`plugin_errors`) and skipped, never fatal. learnkit's own built-ins come in the
same way, through its ``builtin`` entry point; a source checkout that is not installed has no entry
point, so ``learnkit.zoo.builtin`` is then imported directly.

This module imports no torch at import time: the command line lists and completes arch names with
it. Example::

    from learnkit.zoo import register

    @register("tiny", split=lambda m: [m.body, m.head], meta={"description": "a tiny net"})
    def tiny(n_out: int, width: int = 8) -> nn.Module: ...
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learnkit.errors import LearnkitError, UsageError

ENTRY_POINT_GROUP = "learnkit.zoo"
BUILTIN_PLUGIN = "learnkit.zoo.builtin"
# arch families of learnkit's own extras: prefix -> (module it needs, what to install)
EXTRA_FAMILIES = {"timm/": ("timm", "learnkit[timm]")}


@dataclass(frozen=True)
class ArchEntry:
    """One registered architecture.

    Args:
        name: the arch name users type (``resnet18``).
        builder: ``builder(n_out, **kwargs) -> nn.Module``, the whole model with ``n_out`` outputs.
        split: ``split(model) -> [group, ...]``, each group a module or a list of modules, body
            groups first and the head last; ``None`` means one group, the whole model.
        cut: where a new head goes: an index into ``list(model.children())`` (the body is the
            children before it) or a callable ``cut(model) -> body``; ``None`` for a model that is
            used only as it is.
        meta: ``description`` (one line), ``min_size`` (smallest input side in pixels), ``params``
            (parameter count with 1000 outputs) and ``groups`` (layer groups), which ``zoo list``
            shows without building the model, ``encoder_cut`` (the cut that makes a U-Net
            encoder of an arch without ``cut``), ``native_size`` (the input side the model is made
            for, where it is not built the same at every size) and ``size_kwarg`` (the builder
            keyword that sets the input side, timm's ``img_size``: a Learner passes its data's
            size there), anything else a plugin wants to say.
        source: the plugin that registered it (its entry-point name) or the builder's module.
    """

    name: str
    builder: Callable[..., Any]
    split: Callable[[Any], Sequence[Any]] | None = None
    cut: int | Callable[[Any], Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def description(self) -> str:
        """The one-line description, or an empty string."""
        return str(self.meta.get("description", ""))

    @property
    def min_size(self) -> int:
        """The smallest input side (pixels) the model accepts; 32 when the entry does not say."""
        return int(self.meta.get("min_size", 32))

    @property
    def native_size(self) -> int | None:
        """The input side (pixels) the model is made for (``meta["native_size"]``, timm's default
        ``input_size``); None for a model that takes any size from ``min_size`` up."""
        size = self.meta.get("native_size")
        return int(size) if size else None

    def size_kwargs(self, size: int | None) -> dict[str, Any]:
        """The builder keyword that sets the model's input side (``meta["size_kwarg"]``, e.g. timm's
        ``img_size``) set to ``size``; empty for a model built the same at every size."""
        kwarg = self.meta.get("size_kwarg")
        return {str(kwarg): int(size)} if kwarg and size else {}

    def layer_groups(self, model: Any) -> list[Any]:
        """Apply the entry's split to ``model`` (as its builder made it); each group a module."""
        from torch import nn

        groups = self.split(model) if self.split is not None else [model]
        return [g if isinstance(g, nn.Module) else nn.Sequential(*g) for g in groups]


@dataclass(frozen=True)
class ArchFamily:
    """Archs registered lazily under a name prefix (``timm/``), for plugins with many of them.

    Args:
        prefix: every name of the family starts with it.
        list_names: ``list_names() -> [name, ...]`` (full names, with the prefix); called only
            when a lookup or a pattern reaches into the family, so listing other archs stays cheap.
        make_entry: ``make_entry(name) -> ArchEntry | None`` (None: no such arch); called on the
            first :func:`get` of a name, whose entry is then kept.
        source: the plugin that registered it.
    """

    prefix: str
    list_names: Callable[[], Sequence[str]]
    make_entry: Callable[[str], ArchEntry | None]
    source: str = ""

    def reached_by(self, pattern: str) -> bool:
        """True when the fnmatch ``pattern`` names this family: its fixed head (the text before
        the first wildcard) is not empty and agrees with the prefix (``timm/*``, ``tim*``).
        A bare ``*`` lists the eager archs only, so ``zoo list`` and completion stay fast."""
        head = pattern.split("*")[0].split("?")[0].split("[")[0]
        return bool(head) and (head.startswith(self.prefix) or self.prefix.startswith(head))


_entries: dict[str, ArchEntry] = {}
_families: dict[str, ArchFamily] = {}
_plugin_errors: dict[str, str] = {}
_plugin_modules: list[str] = []  # modules imported as plugins, so _reset can import them afresh
_plugins_loaded = False
_staging: dict[str, ArchEntry] | None = None  # registrations of the plugin being imported
_loading_plugin: str | None = None
_lock = threading.RLock()


def register(
    name: str,
    builder: Callable[..., Any] | None = None,
    *,
    split: Callable[[Any], Sequence[Any]] | None = None,
    cut: int | Callable[[Any], Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> Any:
    """Register an arch; with no ``builder``, return a decorator that registers the function.

    A name that is already taken raises :class:`UsageError`. Example::

        register("wide_cnn", build_wide_cnn, split=split_body_head, meta={"min_size": 16})
    """
    if builder is None:

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            register(name, fn, split=split, cut=cut, meta=meta)
            return fn

        return decorate
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise UsageError(f"arch name must be a non-empty string without spaces, not {name!r}")
    if not callable(builder):
        raise UsageError(f"arch '{name}': builder must be callable")
    with _lock:
        if _staging is None:
            _load_plugins()  # so a clash with a plugin's name is reported here, where it is made
        taken = _entries.get(name) or (_staging or {}).get(name)
        if taken is not None:
            raise UsageError(f"arch '{name}' is already registered (by {taken.source})")
        source = _loading_plugin or getattr(builder, "__module__", "") or "?"
        entry = ArchEntry(name, builder, split, cut, dict(meta or {}), source)
        (_staging if _staging is not None else _entries)[name] = entry
    return builder


def register_family(
    prefix: str,
    list_names: Callable[[], Sequence[str]],
    make_entry: Callable[[str], ArchEntry | None],
) -> None:
    """Register a lazy family of archs under ``prefix`` (see :class:`ArchFamily`).

    A prefix that is already taken, or that an eager arch's name starts with, raises
    :class:`UsageError`. Example (the timm plugin)::

        register_family("timm/", list_timm_names, timm_entry)
    """
    if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "*?[ "):
        raise UsageError(f"a family prefix must be a non-empty name start, not {prefix!r}")
    with _lock:
        if _staging is None:
            _load_plugins()
        if prefix in _families:
            raise UsageError(f"arch family '{prefix}' is already registered (by {_families[prefix].source})")
        family = ArchFamily(prefix, list_names, make_entry, _loading_plugin or "?")
        _families[prefix] = family


def arch_entry(
    name: str,
    builder: Callable[..., Any],
    *,
    split: Callable[[Any], Sequence[Any]] | None = None,
    cut: int | Callable[[Any], Any] | None = None,
    meta: dict[str, Any] | None = None,
    source: str = "",
) -> ArchEntry:
    """An :class:`ArchEntry` for a family's ``make_entry`` to return (not registered by itself);
    an empty ``source`` becomes the family's plugin."""
    return ArchEntry(name, builder, split, cut, dict(meta or {}), source)


def _family_of(name: str) -> ArchFamily | None:
    return next((f for p, f in _families.items() if name.startswith(p)), None)


def _family_entry(name: str) -> ArchEntry | None:
    family = _family_of(name)
    if family is None:
        return None
    entry = family.make_entry(name)
    if entry is None:
        return None
    if not entry.source:
        entry = ArchEntry(entry.name, entry.builder, entry.split, entry.cut, entry.meta, family.source)
    with _lock:
        return _entries.setdefault(name, entry)


def get(name: str) -> ArchEntry:
    """The entry of ``name``; an unknown name raises :class:`UsageError` with the close names."""
    _load_plugins()
    entry = _entries.get(name) or _family_entry(str(name))
    if entry is None:
        family = _family_of(str(name))
        pool = list(family.list_names()) if family is not None else list(_entries)
        close = difflib.get_close_matches(str(name), pool, n=3, cutoff=0.6)
        hint = f"did you mean: {', '.join(close)}?" if close else "see `learnkit zoo list`"
        raise UsageError(f"unknown arch '{name}'; {missing_extra(str(name)) or hint}")
    return entry


def _eager_or_reached(name: str, pattern: str) -> bool:
    """An entry registered eagerly, or one a family made on first use (kept in the entries) whose
    family ``pattern`` reaches: a bare ``*`` stays the eager zoo however many were used."""
    family = _family_of(name)
    return family is None or family.reached_by(pattern)


def missing_extra(pattern: str) -> str | None:
    """For a name or pattern inside a family of one of learnkit's extras (``timm/*``) whose plugin
    is not loaded: what to install, as a sentence; None otherwise."""
    _load_plugins()
    for prefix, (module, extra) in EXTRA_FAMILIES.items():
        reached = ArchFamily(prefix, tuple, lambda _: None).reached_by(pattern)
        if reached and prefix not in _families:
            why = "failed to load" if importlib.util.find_spec(module) else "is not installed"
            return f"the {prefix}* archs need {module}, which {why}: pip install '{extra}'"
    return None


def complete(incomplete: str) -> list[str]:
    """The arch names that start with ``incomplete``, for TAB completion (no torch imported): the
    eager archs, a lazy family's prefix (``timm/``) while ``incomplete`` is shorter, and the
    family's names once it is typed (from the family's listing: nothing is built)."""
    _load_plugins()
    found = [n for n in _entries if n.startswith(incomplete) and _family_of(n) is None]
    for prefix, family in list(_families.items()):
        if incomplete.startswith(prefix):
            found += [n for n in family.list_names() if n.startswith(incomplete)]
        elif prefix.startswith(incomplete):
            found.append(prefix)
    return sorted(set(found))


def names(pattern: str = "*") -> list[str]:
    """The registered arch names matching the fnmatch ``pattern``, sorted.

    A lazy family's names (see :func:`register_family`) are included when the pattern names the
    family (``timm/*``), not for a bare ``*``.
    """
    _load_plugins()
    found = {n for n in fnmatch.filter(_entries, pattern) if _eager_or_reached(n, pattern)}
    for family in list(_families.values()):
        if family.reached_by(pattern):
            found.update(fnmatch.filter(family.list_names(), pattern))
    return sorted(found)


def create(name: str, n_out: int, pretrained: str | Path | None = None, **kwargs: Any) -> Any:
    """Build arch ``name`` with ``n_out`` outputs, optionally loading a local state-dict file.

    ``None`` kwargs are dropped, so a command line's unset options never override the builder's
    defaults; an option the builder does not take raises :class:`UsageError`. ``pretrained`` is a
    ``.safetensors`` file (or ``.pt``/``.pth``, read with ``weights_only=True``) whose keys must fit
    the whole model, else :class:`~learnkit.errors.CheckpointError` names the keys that do not.
    """
    entry = get(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    _check_kwargs(entry, kwargs)
    model = entry.builder(n_out, **kwargs)
    pretrained = pretrained_file(entry, pretrained)
    if pretrained is not None:
        from learnkit.weights import load_weights, read_state_dict

        load_weights(model, read_state_dict(pretrained), where=str(pretrained))
    return model


def pretrained_file(entry: ArchEntry, pretrained: str | Path | None) -> Path | None:
    """The local weights file ``pretrained`` stands for, for arch ``entry``.

    A path is itself. A bare word (no path separator, no file of that name) goes to the entry's
    ``meta["weights"]`` resolver when it has one: ``weights(word) -> Path`` finds the arch's
    published weights in a local cache (the timm plugin reads the Hugging Face cache) and raises
    :class:`~learnkit.errors.DataError` naming the missing file and its folder.
    """
    if pretrained is None:
        return None
    resolver = entry.meta.get("weights")
    text = str(pretrained)
    is_word = "/" not in text and "\\" not in text and "." not in text and not Path(text).exists()
    if callable(resolver) and is_word:
        return Path(resolver(text))
    return Path(text)


def plugin_errors() -> dict[str, str]:
    """The plugins that failed to load, each with its error (one line)."""
    _load_plugins()
    return dict(_plugin_errors)


def _check_kwargs(entry: ArchEntry, kwargs: dict[str, Any]) -> None:
    try:
        params = inspect.signature(entry.builder).parameters.values()
    except (TypeError, ValueError):  # a builder without a signature: let it check for itself
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY][1:]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "none"
        raise UsageError(f"arch '{entry.name}' takes no option {', '.join(unknown)} (options: {takes})")


def _load_plugins() -> None:
    global _plugins_loaded
    with _lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True  # set first: a plugin that looks names up must not recurse
        plugins = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            plugins.setdefault(ep.value, ep)  # the same dist seen twice on sys.path loads once
        # The built-ins first, so a plugin reusing one of their names is the one refused; through
        # learnkit's own entry point when installed, else straight from the source checkout.
        builtin = next((ep for ep in plugins.values() if ep.module == BUILTIN_PLUGIN), None)
        _load_one(
            builtin.name if builtin else "builtin",
            BUILTIN_PLUGIN,
            builtin.load if builtin else _import_builtin,
        )
        for ep in sorted(plugins.values(), key=lambda ep: ep.name):
            if ep is not builtin:
                _load_one(ep.name, ep.module, ep.load)


def _load_one(plugin: str, module: str, load: Callable[[], Any]) -> None:
    """Import one plugin; keep its archs only if the whole import succeeded."""
    global _staging, _loading_plugin
    _staging, _loading_plugin = {}, plugin
    try:
        load()
    except Exception as exc:  # a broken plugin must never take the others down
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _plugin_errors[plugin] = message
        for prefix in [p for p, f in _families.items() if f.source == plugin]:
            del _families[prefix]  # a family of a plugin that failed half-way goes too
        warnings.warn(f"learnkit.zoo plugin '{plugin}' skipped: {message}", RuntimeWarning, stacklevel=4)
    else:
        _entries.update(_staging)
        _plugin_modules.append(module)
    finally:
        _staging, _loading_plugin = None, None


def _import_builtin() -> Any:
    """Import the built-in zoo, mounting ``zoo/`` of a source checkout when it is not installed."""
    try:
        return importlib.import_module(BUILTIN_PLUGIN)
    except ModuleNotFoundError as exc:
        zoo_dir = Path(__file__).resolve().parent.parent / "zoo"
        if exc.name != "learnkit.zoo" or not (zoo_dir / "__init__.py").is_file():
            raise
    spec = importlib.util.spec_from_file_location(
        "learnkit.zoo", zoo_dir / "__init__.py", submodule_search_locations=[str(zoo_dir)]
    )
    if spec is None or spec.loader is None:
        raise LearnkitError(f"cannot import the built-in zoo from {zoo_dir}")
    package = importlib.util.module_from_spec(spec)
    sys.modules["learnkit.zoo"] = package
    spec.loader.exec_module(package)
    sys.modules["learnkit"].zoo = package  # as the import system does for a subpackage
    return importlib.import_module(BUILTIN_PLUGIN)


def _reset() -> None:
    """Forget every arch and plugin (tests only); the next lookup loads the plugins afresh."""
    global _plugins_loaded
    with _lock:
        _entries.clear()
        _families.clear()
        _plugin_errors.clear()
        for module in _plugin_modules:
            sys.modules.pop(module, None)  # so importing it registers its archs again
        _plugin_modules.clear()
        _plugins_loaded = False
