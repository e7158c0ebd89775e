"""PulmoGate API: REST for jobs, rules and destinations; health checks and metrics."""
