"""The ``learnkit`` command: the Typer app, its global options and the console-script entry point.

Commands live one per module; this file only wires them up. Nothing here imports torch: the
commands import the library inside their bodies, so ``learnkit --help`` and TAB completion stay
instant.
"""

import typer

from .context import DebugOpt, QuietOpt
from .export import export
from .group import LearnkitGroup
from .helpfmt import LearnkitCommand
from .lr_find import lr_find
from .predict import predict
from .report import report
from .sample import sample
from .summary import summary
from .training import training_command
from .tta import tta
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
    debug: DebugOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train, validate and use PyTorch vision models from the command line, the fastai v1 way.

    Results go to stdout (tables, or JSON with --json), progress and logs to stderr.
    """
    # --debug and --quiet are read where they are needed, through context.global_options().


app.command("fit", cls=LearnkitCommand)(training_command("fit"))
app.command("fit-one-cycle", cls=LearnkitCommand)(training_command("fit-one-cycle"))
app.command("lr-find", cls=LearnkitCommand)(lr_find)
app.command("validate", cls=LearnkitCommand)(validate)
app.command("predict", cls=LearnkitCommand)(predict)
app.command("tta", cls=LearnkitCommand)(tta)
app.command("unet", cls=LearnkitCommand)(training_command("unet"))
app.command("summary", cls=LearnkitCommand)(summary)
app.command("export", cls=LearnkitCommand)(export)
app.command("report", cls=LearnkitCommand)(report)
app.command("sample", cls=LearnkitCommand)(sample)
app.command("version", cls=LearnkitCommand)(version)
app.add_typer(zoo_app, name="zoo")


def main() -> None:
    """Run the ``learnkit`` command line; started by :func:`learnkit.cli.entry.main`.

    That entry point handles SIGTERM like Ctrl-C before anything heavy is imported (a fit installs
    its own stop-at-the-next-batch handler later). However an interrupt arrives, even twice or
    during start-up, the command ends with one ``error: interrupted`` line and exit code 130,
    never a traceback: in a command, :class:`~learnkit.cli.group.LearnkitGroup` reports it; here,
    one that comes while the command line is being built.
    """
    import sys

    from .group import interrupted

    try:
        from learnkit.cli.launch import normalize_args

        app(args=normalize_args(sys.argv[1:]), prog_name="learnkit")
    except KeyboardInterrupt:
        sys.exit(interrupted().exit_code)
