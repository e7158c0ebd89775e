"""PulmoGate sender: C-STORE of results to destinations, with retries and backoff."""
