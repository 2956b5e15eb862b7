"""``--trust-size``: the option of the commands that read a checkpoint (predict, validate, tta, export,
summary, report), lifting the budget its recorded size is checked against (learnkit.build_budget)."""

from typing import Annotated

import typer

TrustSizeOpt = Annotated[
    bool,
    typer.Option(
        "--trust-size",
        help="Lift the memory budget a checkpoint's recorded size is checked against (a file you trust).",
        rich_help_panel="Runtime",
    ),
]


def apply_trust_size(trust: bool) -> None:
    """Lift the budget for the rest of this command when ``trust``."""
    if trust:
        from learnkit.build_budget import trust_size

        trust_size(True)
