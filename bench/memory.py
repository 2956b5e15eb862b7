"""Peak memory (RSS) of a fit against the plain PyTorch loop.

Each fit runs in a fresh process: the loop of :mod:`bench.loop_overhead` (the same model, the same
in-memory batches, the same optimizer and 1cycle schedule), either as ``Learner.fit_one_cycle``
(with its Recorder and an accuracy metric) or as the hand-written loop. The process reports its
peak resident set size (``ru_maxrss``) and its RSS just before training, so the table shows the
whole peak (what the machine must have) and the part the training itself adds.

RSS also counts the pages of torch's shared libraries, which the kernel may drop and re-read when
the machine is short of memory: the note gives the peak of the anonymous memory too (the heap:
tensors and Python objects, sampled every 2 ms), which is what a fit itself allocates.
"""

from __future__ import annotations

from bench.common import Row, interleave, log, median, run_child

_CHILD = r"""
import json, resource, sys, threading, time, torch
from bench import loop_overhead as lo

kind, case_name, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
case = next(c for c in lo.memory_cases() if c.name == case_name)
if kind == "learnkit":
    import learnkit.learner, learnkit.callbacks.one_cycle  # what a learnkit fit imports, before the baseline
fit = lo.learnkit_fit if kind == "learnkit" else lo.plain_fit
train = lo._make_batches(case.n_batches, case.bs, case.size, 4, seed=0)
valid = lo._make_batches(case.n_valid, case.bs, case.size, 4, seed=1)
torch.manual_seed(0)
model = case.make_model(4)

def status_mb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024

anon = [status_mb("RssAnon:")]
done = threading.Event()

def sample():
    while not done.wait(0.002):
        anon.append(status_mb("RssAnon:"))

sampler = threading.Thread(target=sample, daemon=True)
before = status_mb("VmRSS:")
sampler.start()
fit(model, lo._loader(train), lo._loader(valid), case.epochs, case.max_lr, torch.device("cpu"))
done.set()
sampler.join()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"before": before, "peak": peak, "anon_before": anon[0], "anon_peak": max(anon)}))
"""


def run(quick: bool = False, threads: int = 1) -> list[Row]:
    from bench.loop_overhead import memory_cases

    rounds = 1 if quick else 2
    rows = []
    for case in memory_cases():
        log(f"memory: {case.name} ({rounds} round(s)) ...")
        res = interleave(
            {
                kind: (lambda kind=kind, name=case.name: run_child(_CHILD, kind, name, str(threads)))
                for kind in ("plain", "learnkit")
            },
            rounds,
        )
        peak = {k: median(r["peak"] for r in runs) for k, runs in res.items()}
        added = {k: median(r["peak"] - r["before"] for r in runs) for k, runs in res.items()}
        anon = {k: median(r["anon_peak"] for r in runs) for k, runs in res.items()}
        ratio = peak["learnkit"] / peak["plain"]
        heap_ratio = anon["learnkit"] / anon["plain"]
        rows.append(
            Row(
                "memory",
                case.name,
                "peak RSS MB",
                peak["learnkit"],
                peak["plain"],
                ratio,
                "<= 1.10",
                ratio <= 1.10,
                f"added by training: {added['learnkit']:.0f} vs {added['plain']:.0f} MB; peak anonymous "
                f"(heap) {anon['learnkit']:.0f} vs {anon['plain']:.0f} MB ({heap_ratio:.3f})",
                {"runs": res},
            )
        )
    return rows
