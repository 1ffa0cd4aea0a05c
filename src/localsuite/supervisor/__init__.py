"""Run the suite on one machine: service specs, managed processes, the launcher loop."""
