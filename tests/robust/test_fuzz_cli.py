"""Hypothesis fuzzes the training commands' arguments through ``CliRunner``: whatever the input, a
command ends in success (0), a usage error (2) or, for a data path that does not exist, a data
error (3); never a traceback or exit 1.

Fast by construction: a fit is only attempted on a missing data path (everything is checked first,
then the data is not found) or as ``fit-one-cycle --dry-run`` on a tiny folder (no training; a plan
of more than a million batches is refused, so a huge fuzzed --epochs is exit 2, not an endless
list). ``LEARNKIT_FUZZ_EXAMPLES`` sets the examples of each test (50 by default; 1000 takes ~7 min
on 2 busy cores, see the README's reliability section).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from learnkit.cli.app import app

from .conftest import make_folder

runner = CliRunner(env={"CI": "1"})
EXAMPLES = int(os.environ.get("LEARNKIT_FUZZ_EXAMPLES", "50"))  # more for a longer hunt by hand
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-0", "1e-5", "1e400", "nan", "inf", "-1", "0x10", "1_000", "", " ", "1e-3 "]),
)
slices = st.builds(lambda a, b, sep: f"{a}{sep}{b}", numbers | st.just(""), numbers | st.just(""),
                   st.sampled_from([":", "::", ",", ": "]))  # fmt: skip
texty = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
paths = st.builds(
    lambda parts: " ".join(parts) or "x",
    st.lists(st.sampled_from(["dir", "with space", "ünïcødé", "数据", "a:b", "--x", "~", "..", "é/è"]),
             min_size=1, max_size=3),
)  # fmt: skip

VALID = {  # sensible values, mixed in so that many examples get past parsing
    "--lr": ["1e-3", "1e-5:1e-3", ":1e-2", "0.1"],
    "--wd": ["0", "1e-2", "0:1e-2"],
    "--moms": ["0.95,0.85", "0.9:0.8"],
    "--epochs": ["1", "3"],
    "--bs": ["1", "2", "64"],
    "--size": ["16", "32"],
    "--seed": ["0", "42", str(2**63 - 1)],
    "--workers": ["0"],
    "--pct-start": ["0", "0.25", "1"],
    "--div-factor": ["1", "25"],
    "--valid-pct": ["0.2"],
    "--patience": ["0", "3"],
    "--monitor": ["valid_loss", "accuracy"],
    "--device": ["cpu", "CPU"],
    "--arch": ["simple_cnn"],
    "--nproc": ["1"],
}
FUZZY = {
    "--lr": numbers | slices | texty,
    "--wd": numbers | slices,
    "--moms": slices | numbers,
    "--epochs": numbers,
    "--bs": numbers,
    "--size": numbers,
    "--seed": numbers,
    "--workers": numbers,
    "--pct-start": numbers,
    "--div-factor": numbers,
    "--valid-pct": numbers,
    "--patience": numbers,
    "--monitor": texty | st.sampled_from(["acc", "valid loss"]),
    "--device": texty | st.sampled_from(["cuda:99", "mps", "auto", "gpu"]),
    "--arch": texty | st.sampled_from(["resnet", "SIMPLE_CNN"]),
    "--resume": paths,
    "--init-from": paths,
    "--nproc": st.sampled_from(["0", "-1", "x", "2e3"]),
}
OPTIONS = {k: st.sampled_from(VALID[k]) | v if k in VALID else v for k, v in FUZZY.items()}
chosen = st.dictionaries(st.sampled_from(sorted(OPTIONS)), st.just(None), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: OPTIONS[k] for k in keys})
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("fuzz-data"), n_train=4, n_valid=2, size=8)


def _args(options: dict[str, str]) -> list[str]:
    out = []
    for name, value in options.items():
        out += [name, value] if not value.startswith("-") else [f"{name}={value}"]
    return out


def _ok(result, allowed) -> None:
    event(f"exit {result.exit_code}")
    assert result.exit_code in allowed, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    if result.exit_code:
        assert [line for line in result.stderr.splitlines() if line.strip()][-1].startswith("error: ")


@FUZZ
@given(options=chosen, data_name=paths, command=st.sampled_from(["fit", "fit-one-cycle"]))
def test_fuzzed_arguments_on_missing_data_exit_2_or_3(tmp_path_factory, options, data_name, command):
    missing = tmp_path_factory.getbasetemp() / "no such data" / data_name
    args = [command, str(missing), *_args({"--arch": "simple_cnn", "--device": "cpu", **options})]
    _ok(runner.invoke(app, args), {2, 3})


@pytest.mark.slow
@FUZZ
@given(options=chosen.map(lambda o: {k: v for k, v in o.items() if k not in ("--valid-pct", "--nproc")}))
def test_fuzzed_arguments_on_a_dry_run_exit_0_or_2(folder, tmp_path_factory, options):
    run = tmp_path_factory.getbasetemp() / "fuzz run ü"
    args = ["fit-one-cycle", str(folder), "--dry-run", "--arch", "simple_cnn", "--path", str(run),
            *_args({"--device": "cpu", "--size": "16", **options})]  # fmt: skip
    _ok(runner.invoke(app, args), {0, 2})
