"""``python -m learnkit``: the same as the ``learnkit`` command."""

from learnkit.cli.app import main

if __name__ == "__main__":
    main()
