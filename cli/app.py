"""The ``learnkit`` command: the Typer app, its global options and the console-script entry point.

Commands live one per module; this file only names them (:data:`COMMANDS`): a command's module
is imported when that command runs or shows its help, never for another one's. Nothing here
imports torch, and the commands import the library inside their bodies, so ``learnkit --help``,
a command's ``--help`` and TAB completion stay instant.
"""

import typer

from .context import DebugOpt, QuietOpt
from .group import LearnkitGroup

# Each command is imported only when it runs (or its --help is asked): the root's help and TAB
# completion of a command name need only these lines. name: (module in learnkit.cli, attribute
# (``f()``: the command is ``f(name)``, as the training commands generated from the RunConfig
# schema), the one-line help the root's --help shows; a test keeps it equal to the command's own).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": (
        "training",
        "training_command()",
        "Train ARCH on DATA at a constant LR into a run folder (Ctrl-C saves, exit 130).",
    ),
    "fit-one-cycle": (
        "training",
        "training_command()",
        "Train ARCH on DATA with 1cycle into a run folder (Ctrl-C saves, exit 130).",
    ),
    "lr-find": (
        "lr_find",
        "lr_find",
        "Run the LR range test of ARCH on DATA; prints suggestions and saves PATH/plots/lr_find.png.",
    ),
    "validate": (
        "validate",
        "validate",
        "Validate checkpoint MODEL on DATA: loss and metrics, on the fit's own split by default.",
    ),
    "predict": (
        "predict",
        "predict",
        "Predict ITEM... with checkpoint MODEL: label and probability per image (segmentation: a mask).",
    ),
    "tta": (
        "tta",
        "tta",
        "Validate checkpoint MODEL on DATA without and with TTA (the fit's own split by default).",
    ),
    "unet": (
        "training",
        "training_command()",
        "Train a U-Net over ARCH on DATA with 1cycle into a run folder.",
    ),
    "summary": (
        "summary",
        "summary",
        "Summarise --arch A (built for --n-out classes) or the checkpoint --model NAME.",
    ),
    "export": (
        "export",
        "export",
        "Export checkpoint MODEL: 0..1 RGB images in (any batch), probabilities out; checked after writing.",
    ),
    "report": (
        "report",
        "report",
        "Write PATH/report.html: config, epochs, curves, confusion matrix, per-class scores, top losses.",
    ),
    "sample": (
        "sample",
        "sample",
        "Write the built-in sample NAME (e.g. shapes) into DIR, ready for `learnkit fit DIR`.",
    ),
    "version": (
        "version",
        "version",
        "Print the versions of learnkit, torch, torchvision and Python (--devices: CUDA, MPS).",
    ),
    "zoo": ("zoo", "zoo_app", "The model zoo: built-in archs and those of installed plugins."),
}


class Learnkit(LearnkitGroup):
    """The root group, its commands loaded on first use (:data:`COMMANDS`)."""

    lazy_commands = COMMANDS


app = typer.Typer(
    name="learnkit",
    cls=Learnkit,
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
