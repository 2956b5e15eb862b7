"""``torch.compile`` for a training run, falling back to eager with one warning where it cannot.

``nn.Module.compile`` compiles in place, so the model's ``state_dict`` keys stay as they are
(``torch.compile(model)`` would prefix them with ``_orig_mod.`` and break checkpoints).
Compilation itself happens at the first forward pass; a graph that fails there runs eagerly
(dynamo's ``suppress_errors``) instead of ending the run.

Example:
    >>> compile_model(learn.model)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import shutil
import warnings

import torch
from torch import nn


class CompileWarning(UserWarning):
    """``torch.compile`` could not be used; the run goes on uncompiled."""


def compile_problem(device: torch.device | str = "cpu") -> str | None:
    """Why compiling cannot work here (one line), or None when it should."""
    try:
        import torch._dynamo as dynamo
    except Exception as exc:  # a build without dynamo
        return f"torch.compile is unavailable ({type(exc).__name__}: {exc})"
    if not dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    compilers = ("cc", "gcc", "clang", "c++", "g++")
    if torch.device(device).type == "cpu" and not any(shutil.which(c) for c in compilers):
        return "torch.compile on the CPU needs a C/C++ compiler (none on PATH)"
    return None


def compile_model(model: nn.Module, device: torch.device | str = "cpu") -> bool:
    """Compile ``model`` in place; on failure warn once (:class:`CompileWarning`) and leave it eager.

    Returns:
        True when the model was set up for compilation.
    """
    problem = compile_problem(device)
    if problem is None:
        try:
            import torch._dynamo as dynamo

            dynamo.config.suppress_errors = True  # a graph that fails to compile runs eagerly
            model.compile()
            return True
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            problem = f"torch.compile failed ({type(exc).__name__}: {first})"
    warnings.warn(f"{problem}; training uncompiled", CompileWarning, stacklevel=2)
    return False
