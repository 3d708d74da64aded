"""kuik benchmarks: `make bench` runs every suite and prints a summary to record in docs/benchmarks.md."""
