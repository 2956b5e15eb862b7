"""The training commands are generated from the RunConfig schema: one option per field that applies,
with the schema's help, default and bounds, and one validation for every source of a value."""

import math

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from learnkit.cli.app import app
from learnkit.jobs.config import COMMANDS, RunConfig, default_for, schema
from learnkit.jobs.schema import TRAINING_COMMANDS, flag_of, opt_of

runner = CliRunner()
HOW_TO_RUN = {
    "config",
    "print_config",
    "as_json",
    "dry_run",
    "help",
    "debug",
    "quiet",
    "install_completion",
    "show_completion",
}


def _click_command(name):
    group = typer.main.get_command(app)
    return group.commands[name]


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_every_schema_field_is_one_option_of_each_command_it_applies_to(command):
    click_cmd = _click_command(command)
    params = {p.name: p for p in click_cmd.params}
    options = schema(command)
    assert set(params) - HOW_TO_RUN == set(options)  # nothing else, nothing missing
    for name, (_, f) in options.items():
        o, p = opt_of(f), params[name]
        assert p.help == o.help
        if not o.argument:
            assert flag_of(name, o) in p.opts  # exactly the schema's spelling
        default = default_for(f, command)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        assert p.default == (None if o.kind == "names" else shown), name
    # every other command's options are absent
    others = {n for c in COMMANDS for n in schema(c)} - set(options)
    assert not others & set(params)


@pytest.mark.parametrize("command", TRAINING_COMMANDS)
def test_print_config_equals_the_schema_defaults(command, tmp_path):
    data = "sample:shapes-seg" if command == "unet" else "sample:shapes"
    result = runner.invoke(app, [command, data, "--arch", "simple_cnn", "--seed", "1", "--print-config"])
    assert result.exit_code == 0, result.stderr
    printed = RunConfig.from_dict(yaml.safe_load(result.stdout), command)
    for name, value in printed.options().items():
        section, f = schema(command)[name]
        want = {"data": data, "arch": "simple_cnn", "seed": 1}.get(name, default_for(f, command))
        if name == "loggers":
            want = ("csv",)
        if name in ("lr", "wd") and want is not None:
            want = float(want)
        assert value == want, name


def _outside(o):
    """A value just outside ``o``'s bounds, or None when it has none to test."""
    if o.low is not None:
        return o.low if o.low_open else o.low - 1
    if o.high is not None:
        return o.high if o.high_open else o.high + 1
    return None


BOUNDED = sorted(
    (command, name)
    for command in TRAINING_COMMANDS
    for name, (_, f) in schema(command).items()
    if _outside(opt_of(f)) is not None and opt_of(f).kind is None
)


@pytest.mark.parametrize(("command", "name"), BOUNDED)
def test_a_bound_is_the_same_from_the_command_line_and_from_yaml(command, name, tmp_path):
    section, f = schema(command)[name]
    o = opt_of(f)
    bad = _outside(o)
    bad = int(bad) if str(f.type).startswith("int") else float(bad)
    data = "sample:shapes-seg" if command == "unet" else "sample:shapes"
    base = [command, data, "--arch", "simple_cnn", "--print-config"]
    cli = runner.invoke(app, [*base, flag_of(name, o), repr(bad)])
    key = section.split(".")[-1] if section != "model.unet" else "model"
    doc = {key: {"unet": {name: bad}}} if section == "model.unet" else {section: {name: bad}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
    file = runner.invoke(app, [*base, "--config", str(tmp_path / "c.yaml")])
    assert cli.exit_code == file.exit_code == 2
    assert cli.stderr == file.stderr  # one validation, one message
    assert o.bounds_text() in cli.stderr


@pytest.mark.parametrize("value", ["inf", "nan", "1e309", "-inf"])
def test_non_finite_numbers_are_refused(value):
    for flag in ("--mixup", "--cutmix", "--max-zoom", "--max-rotate", "--clip", "--label-smoothing"):
        result = runner.invoke(
            app, ["fit", "sample:shapes", "--arch", "simple_cnn", flag, value, "--print-config"]
        )
        assert result.exit_code == 2, (flag, value, result.stderr)
        assert "finite" in result.stderr or "is not" in result.stderr


def test_a_partial_config_merges_with_data_and_arch_from_the_command_line(tmp_path):
    (tmp_path / "ep.yaml").write_text("schedule:\n  epochs: 2\n")
    result = runner.invoke(
        app,
        [
            "unet",
            "sample:shapes-seg",
            "--arch",
            "simple_cnn",
            "--config",
            str(tmp_path / "ep.yaml"),
            "--print-config",
        ],
    )
    assert result.exit_code == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert (
        cfg["schedule"]["epochs"] == 2
        and cfg["data"]["bs"] == 8
        and math.isclose(cfg["schedule"]["lr"], 1e-3)
    )


@pytest.mark.parametrize(("key", "value"), [("label_delim", ","), ("thresh", 0.3)])
def test_unet_refuses_a_classification_field_before_reading_data(tmp_path, key, value):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": {key: value}}))
    result = runner.invoke(
        app, ["unet", str(tmp_path / "missing"), "--arch", "simple_cnn", "--config", str(tmp_path / "c.yaml")]
    )
    assert result.exit_code == 2
    assert f"data.{key}" in result.stderr and "does not apply" in result.stderr
    assert not (tmp_path / "models").exists()
