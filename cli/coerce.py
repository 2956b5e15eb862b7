"""Typer's value coercion without pydantic for plain values (start-up time).

Typer (0.2x) checks each parameter's value through a pydantic ``TypeAdapter``, built the first time
the parameter is processed, even for an unset flag: importing pydantic (and building the adapters)
then costs a bare command (``learnkit version``) more than everything else it does, and every
command that runs about 0.15 s. A ``bool``, ``str``, ``int``, ``float`` or ``list[str]`` parameter
with no parser, choices or path handling gets here a coercion that returns a value already of its
exact type as it is, reads a plain decimal number for an ``int`` or ``float`` (as the adapter
reads it), and hands any other value to Typer's own adapter. Nothing changes where Typer's
internals are not the ones this was written for.
"""

import re
from collections.abc import Iterable
from typing import Any

# command-line text read here as the number it plainly is; anything else ("1_000", "nan", " 5")
# goes to Typer's adapter, which says what it accepts
_NUMBER = {
    int: re.compile(r"[+-]?[0-9]+"),
    float: re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"),
}

try:
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # another Typer: its own coercion stays
    RuntimeParam = None  # type: ignore[assignment,misc]

if RuntimeParam is not None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class _Plain(RuntimeParam):  # type: ignore[misc,valid-type]
        """A plain value as it is (within the option's bounds); anything else through Typer's adapter."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            if type(value) is self.annotation and self._within(value):
                return value
            if self.annotation is str and type(value) in (int, float):
                return str(value)  # a number default of a text option (``--lr``), as the adapter gives it
            number = _NUMBER.get(self.annotation)
            if number is not None and type(value) is str and number.fullmatch(value):
                read = self.annotation(value)  # a plain decimal number, as the adapter reads it
                if self._within(read):
                    return read
            if self.annotation == list[str] and isinstance(value, list | tuple):
                if all(type(v) is str for v in value):
                    return list(value)
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param=param, ctx=ctx)

        def _within(self, value: Any) -> bool:
            """Inside the option's ``min``/``max`` (``--n-out``'s ``min=1``); a value outside goes
            to Typer's adapter, which refuses it with its own message (exit 2)."""
            if type(value) not in (int, float):
                return True
            low, high = getattr(self.parameter_info, "min", None), getattr(self.parameter_info, "max", None)
            return (low is None or value >= low) and (high is None or value <= high)


def _plain(param: Any) -> bool:
    desc = getattr(param, "type_descriptor", None)
    if desc is None or getattr(param, "_runtime_param", None) is not None:
        return False
    info = desc.parameter_info
    if desc.file_annotation is not None:
        return False
    if desc.annotation == list[str]:
        return getattr(info, "parser", None) is None and getattr(info, "click_type", None) is None
    if desc.annotation not in (bool, str, int, float):
        return False
    if getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None:
        return False
    try:
        return not (desc.is_choice or desc.is_path or desc.is_list or desc.is_tuple)
    except AttributeError:
        return False


def plain_coercion(commands: Iterable[Any]) -> None:
    """Give the plain parameters of ``commands`` (and of nested groups) the light coercion."""
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
