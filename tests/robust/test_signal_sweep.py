"""Issue 28, point 9: a signal at any moment of the end of a run ends with 130 and one line, or with
exit 0 and the run's result complete; never a death by signal without a word.

Before: a SIGINT/SIGTERM landing in the last seconds of a short fit (while the interpreter shut
down after the result was printed) ended with status -2/-15 and no line in 11 of 28 trials.

The sweep: each fit is signalled a moment after it reports its last step (the ``plot:`` lines that
follow the final epoch, then the result, then the interpreter's shutdown), the moments spread over
the second that follows, alternating SIGINT and SIGTERM; a fit that already ended is not signalled.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from .conftest import cli_env, learnkit_exe

FIT = ["--arch", "simple_cnn", "--size", "16", "--epochs", "1", "--seed", "0", "--device", "cpu"]
DELAYS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8)


@pytest.mark.slow
def test_a_signal_near_the_end_of_a_fit_is_130_with_one_line_or_a_complete_result(tiny_folder, tmp_path):
    outcomes = []
    for i, delay in enumerate(DELAYS):
        sig = signal.SIGINT if i % 2 == 0 else signal.SIGTERM
        run = tmp_path / f"r{i}"
        proc = subprocess.Popen(
            [learnkit_exe(), "fit", str(tiny_folder), *FIT, "--path", str(run)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        )  # fmt: skip
        err_lines = []
        for line in proc.stderr:  # the run's last step: its plots, written after the final epoch
            err_lines.append(line)
            if line.startswith("plot:"):
                break
        time.sleep(delay)
        sent = proc.poll() is None
        if sent:
            proc.send_signal(sig)
        out, rest = proc.communicate(timeout=300)
        err = "".join(err_lines) + rest
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        case = f"{sig.name} {delay:.2f}s after the plots: status {proc.returncode}, stderr {err[-300:]!r}"
        assert proc.returncode in (0, 130), case
        assert "Traceback" not in err, case
        if proc.returncode == 130:
            assert len(errors) == 1 and "interrupted" in errors[0], case
        else:
            complete = "checkpoint" in out and (run / "models" / "last.safetensors").is_file()
            assert not errors and complete, case
        outcomes.append((sig.name, delay, proc.returncode if sent else "ended"))
    print(f"\nsignal sweep over the second after a fit's last step: {outcomes}")
