"""End-to-end runs: the real command-line tools, in subprocesses."""
