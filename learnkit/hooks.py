"""Hooks on a model's modules, with fastai v1's names: :class:`Hook`, :class:`Hooks`,
:func:`hook_output`, :func:`hook_outputs` (``fastai/callbacks/hooks.py``).

Example:
    >>> with hook_output(learn.model[0]) as hook:  # doctest: +SKIP
    ...     learn.model(x)
    ...     features = hook.stored
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

HookFunc = Callable[[nn.Module, Any, Any], Any]


def _is_listy(x: Any) -> bool:
    return isinstance(x, (list, tuple))


class Hook:
    """Calls ``hook_func(module, input, output)`` on each forward (or, with ``is_forward=False``,
    backward) pass of ``m`` and keeps its result in :attr:`stored`; ``detach`` detaches the
    tensors first. A context manager: leaving it removes the hook."""

    def __init__(self, m: nn.Module, hook_func: HookFunc, is_forward: bool = True, detach: bool = True):
        self.hook_func, self.detach, self.stored = hook_func, detach, None
        register = m.register_forward_hook if is_forward else m.register_full_backward_hook
        self.hook = register(self.hook_fn)
        self.removed = False

    def hook_fn(self, module: nn.Module, input: Any, output: Any) -> None:
        """Apply ``hook_func`` to ``module``, ``input``, ``output`` (detached when asked)."""
        if self.detach:
            input = tuple(o.detach() for o in input) if _is_listy(input) else input.detach()
            output = tuple(o.detach() for o in output) if _is_listy(output) else output.detach()
        self.stored = self.hook_func(module, input, output)

    def remove(self) -> None:
        """Remove the hook from the model (once)."""
        if not self.removed:
            self.hook.remove()
            self.removed = True

    def __enter__(self, *args: Any) -> Hook:
        return self

    def __exit__(self, *args: Any) -> None:
        self.remove()


class Hooks:
    """A :class:`Hook` on each module of ``ms``; :attr:`stored` is their results, in order."""

    def __init__(
        self, ms: Sequence[nn.Module], hook_func: HookFunc, is_forward: bool = True, detach: bool = True
    ):
        self.hooks = [Hook(m, hook_func, is_forward, detach) for m in ms]

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    @property
    def stored(self) -> list:
        return [h.stored for h in self.hooks]

    def remove(self) -> None:
        """Remove every hook."""
        for h in self.hooks:
            h.remove()

    def __enter__(self, *args: Any) -> Hooks:
        return self

    def __exit__(self, *args: Any) -> None:
        self.remove()


def _hook_inner(m: nn.Module, i: Any, o: Any) -> Any:
    return o if isinstance(o, torch.Tensor) else o if _is_listy(o) else list(o)


def hook_output(module: nn.Module, detach: bool = True, grad: bool = False) -> Hook:
    """A :class:`Hook` keeping ``module``'s output (with ``grad``: the gradient of its output)."""
    return Hook(module, _hook_inner, detach=detach, is_forward=not grad)


def hook_outputs(modules: Sequence[nn.Module], detach: bool = True, grad: bool = False) -> Hooks:
    """:class:`Hooks` keeping each module's output (with ``grad``: their output gradients)."""
    return Hooks(modules, _hook_inner, detach=detach, is_forward=not grad)
