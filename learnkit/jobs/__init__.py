"""Jobs the command line runs beyond the core ones in learnkit.runner: options in, plain results out."""
