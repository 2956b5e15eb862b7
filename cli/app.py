"""The ``learnkit`` command: the Typer app, its global options and the console-script entry point.

Commands live one per module; this file only wires them up. Nothing here imports torch: the
commands import the library inside their bodies, so ``learnkit --help`` and TAB completion stay
instant.
"""

from typing import Annotated

import typer

from .export import export
from .fit import fit
from .fit_one_cycle import fit_one_cycle
from .group import LearnkitGroup
from .lr_find import lr_find
from .predict import predict
from .report import report
from .sample import sample
from .summary import summary
from .tta import tta
from .unet import unet
from .validate import validate
from .version import version
from .zoo import zoo_app

app = typer.Typer(
    name="learnkit",
    cls=LearnkitGroup,
    help="Train, validate and use PyTorch vision models from the command line, the fastai v1 way.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Hide progress; results still print.")] = False,
) -> None:
    """Train, validate and use PyTorch vision models from the command line, the fastai v1 way.

    Results go to stdout (tables, or JSON with --json), progress and logs to stderr.
    """
    # --debug and --quiet are read where they are needed, through context.global_options().


app.command("fit")(fit)
app.command("fit-one-cycle")(fit_one_cycle)
app.command("lr-find")(lr_find)
app.command("validate")(validate)
app.command("predict")(predict)
app.command("tta")(tta)
app.command("unet")(unet)
app.command("summary")(summary)
app.command("export")(export)
app.command("report")(report)
app.command("sample")(sample)
app.command("version")(version)
app.add_typer(zoo_app, name="zoo")


def main() -> None:
    """Run the ``learnkit`` command line (the console script and ``python -m learnkit``)."""
    import sys

    from learnkit.launch import normalize_args

    app(args=normalize_args(sys.argv[1:]), prog_name="learnkit")
