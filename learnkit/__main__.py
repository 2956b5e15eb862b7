"""``python -m learnkit``: the same as the ``learnkit`` command."""

from learnkit.cli.entry import main

if __name__ == "__main__":
    main()
