"""PulmoGate router: routing rules, input checks, license hook, job creation and deliveries."""
