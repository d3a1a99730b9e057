"""What every run needs around the model: checkpoints, workdir files, metric writers,
preemption, profiling, device mesh and multi-process start-up, precision, errors, the
host allocator and stored executables."""
