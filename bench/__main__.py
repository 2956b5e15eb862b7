"""``python -m bench``: run every benchmark and print one table (Markdown, so it pastes into
bench/README.md). Progress goes to stderr.

    python -m bench                    # all of them, ~5-8 minutes on a 2-core CPU
    python -m bench --quick            # fewer rounds, ~3 minutes: a smoke run
    python -m bench --only loop,startup --json results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time

from bench import end_to_end, loop_overhead, memory, startup
from bench.common import format_table, log, machine, rows_as_json

BENCHES = {
    "loop": lambda a: loop_overhead.run(a.quick, threads=a.threads),
    "e2e": lambda a: end_to_end.run(a.quick, threads=a.threads),
    "startup": lambda a: startup.run(a.quick),
    "memory": lambda a: memory.run(a.quick, threads=a.threads),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run, noisier)")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {list(BENCHES)}"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of every fit (default 1: on a machine shared with other work, one thread "
        "gives repeatable numbers; both sides of a comparison always use the same)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every row (with raw timings) here")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")

    import torch

    torch.set_num_threads(args.threads)
    info = machine()
    started = time.perf_counter()
    rows = []
    for name in chosen:
        rows += BENCHES[name](args)
    elapsed = time.perf_counter() - started
    info["load_1min_after"] = machine()["load_1min"]
    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"command: {command.strip()}  ({elapsed / 60:.1f} min)")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print()
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": info, "command": command, "seconds": elapsed, "rows": rows_as_json(rows)}, f
            )
        log(f"rows written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
