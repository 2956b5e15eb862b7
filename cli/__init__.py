"""learnkit's command line (installed as ``learnkit.cli``).

A thin front end: each command parses its options, makes one call into the library
(:mod:`learnkit.runner` mostly) and renders the result. Modules here import torch only inside
command functions, so ``learnkit --help`` and TAB completion stay fast.
"""
