"""learnkit's benchmarks: speed, memory and accuracy, each against a baseline measured in the same run.

Run them all with ``python -m bench`` (``make bench``); results and how to read them are in
``bench/README.md``. They are run by hand and print ratios; nothing here is a test.

- :mod:`bench.loop_overhead`: ``Learner.fit_one_cycle`` against a plain PyTorch loop.
- :mod:`bench.end_to_end`: ``learnkit fit-one-cycle sample:shapes``: wall time, accuracy, the cache.
- :mod:`bench.startup`: ``learnkit --help`` and TAB completion against ``python -c pass``.
- :mod:`bench.memory`: peak RSS of a fit against the plain loop.
"""
