"""Typer's value coercion without pydantic for plain flags and strings (start-up time).

Typer (0.2x) checks each parameter's value through a pydantic ``TypeAdapter``, built the first time
the parameter is processed, even for an unset flag: importing pydantic then costs a bare command
(``learnkit version``) more than everything else it does. A ``bool`` or ``str`` parameter with no
parser, choices or path handling gets here a coercion that returns a value already of its type
as it is (what the adapter returns for it) and hands any other value to Typer's own adapter.
Nothing changes where Typer's internals are not the ones this was written for.
"""

from collections.abc import Iterable
from typing import Any

try:
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # another Typer: its own coercion stays
    RuntimeParam = None  # type: ignore[assignment,misc]

if RuntimeParam is not None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class _Plain(RuntimeParam):  # type: ignore[misc,valid-type]
        """A bool or str value as it is; anything else through Typer's adapter."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is self.annotation:
                return value
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)


def _plain(param: Any) -> bool:
    desc = getattr(param, "type_descriptor", None)
    if desc is None or getattr(param, "_runtime_param", None) is not None:
        return False
    info = desc.parameter_info
    if desc.annotation not in (bool, str) or desc.file_annotation is not None:
        return False
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return False
    try:
        return not (desc.is_choice or desc.is_path or desc.is_list or desc.is_tuple)
    except AttributeError:
        return False


def plain_coercion(commands: Iterable[Any]) -> None:
    """Give the plain ``bool``/``str`` parameters of ``commands`` (and nested groups) the light
    coercion."""
    if RuntimeParam is None:
        return
    for command in commands:
        nested = getattr(command, "commands", None)
        if nested is not None:
            plain_coercion(nested.values())
        help_option = getattr(command, "_help_option", None)  # made and kept by tidy_help
        for param in [*command.params, *([help_option] if help_option is not None else [])]:
            if _plain(param):
                desc = param.type_descriptor
                param._runtime_param = _Plain(parameter_info=desc.parameter_info, annotation=desc.annotation)
