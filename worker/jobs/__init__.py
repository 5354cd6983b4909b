"""Job kinds: each module's `run(ctx) -> dict` does one kind's work in the child process."""
