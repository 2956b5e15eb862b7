"""``learnkit zoo list`` and ``learnkit zoo show`` through the installed command, a throwaway
entry-point plugin included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import _env, learnkit_exe, run_learnkit

BUILTINS = ["efficientnet_b0", "mobilenet_v3_small", "resnet18", "resnet34", "resnet50", "simple_cnn"]

PLUGIN = """
import torch
from learnkit.zoo import register

@register("tinyplug_net", meta={"description": "a throwaway plugin's net"})
def tinyplug_net(n_out, **kwargs):
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(n_out))
"""


def make_plugin_dir(root: Path) -> Path:
    """``tinyplug.py`` and a ``tinyplug-0.1.dist-info`` naming it in the ``learnkit.zoo`` group."""
    (root / "tinyplug.py").write_text(PLUGIN)
    info = root / "tinyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[learnkit.zoo]\ntinyplug = tinyplug\n")
    return root


@pytest.mark.slow
def test_zoo_list_json_lines_with_builtins_and_an_entry_point_plugin(tmp_path):
    env = _env() | {
        "PYTHONPATH": os.pathsep.join([str(make_plugin_dir(tmp_path)), os.environ.get("PYTHONPATH", "")])
    }
    proc = subprocess.run(
        [learnkit_exe(), "zoo", "list", "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert set(BUILTINS) <= set(rows)
    assert rows["resnet18"] == {
        "name": "resnet18",
        "params": 11_689_512,
        "groups": 3,
        "source": "builtin",
        "description": "ResNet-18 (torchvision): basic blocks [2, 2, 2, 2]",
    }
    assert rows["simple_cnn"]["groups"] == 2
    plugin = rows["tinyplug_net"]
    assert plugin["source"] == "tinyplug" and plugin["params"] is None  # no meta: not built to list
    assert plugin["groups"] is None
    proc = subprocess.run(
        [learnkit_exe(), "zoo", "list", "tinyplug*", "--count", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    counted = json.loads(proc.stdout)
    assert counted["params"] is None and counted["groups"] == 1  # lazy layers: unknown until run


def test_zoo_list_and_version_import_no_torch():
    code = (
        "import sys; from learnkit.cli.app import app; "
        "[app(args=a, standalone_mode=False) for a in (['zoo', 'list', '--json'], ['version'])]; "
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.slow
def test_zoo_list_pattern_and_plain_text():
    proc = run_learnkit("zoo", "list", "resnet*")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "params", "groups", "source", "description"]
    assert [line.split()[0] for line in lines[1:]] == [
        "resnet101",
        "resnet152",
        "resnet18",
        "resnet34",
        "resnet50",
    ]


@pytest.mark.slow
def test_zoo_show_json_gives_the_split_layer_by_layer():
    proc = run_learnkit("zoo", "show", "resnet18", "--n-out", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["kind"] == "cnn" and [g["group"] for g in shown["groups"]] == [0, 1, 2]
    first = [layer["name"] for layer in shown["groups"][0]["layers"]]
    assert first[:2] == ["0.0", "0.1"]  # conv1, bn1 of the body
    assert shown["groups"][2]["layers"][-1] == {"name": "1.8", "layer": "Linear", "params": 512 * 5 + 5}
    assert sum(g["params"] for g in shown["groups"]) == shown["params"]


def test_zoo_show_unknown_name_suggests_close_names():
    from typer.testing import CliRunner

    from learnkit.cli.app import app

    result = CliRunner(env={"CI": "1"}).invoke(app, ["zoo", "show", "resnet19"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown arch 'resnet19'; did you mean: resnet18")
    assert result.stderr.count("\n") == 1
