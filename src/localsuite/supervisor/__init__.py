"""Run the suite on one machine: service specs, managed processes, the supervision loop,
its control API and the operations it runs (restart, model switch)."""
