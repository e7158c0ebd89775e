"""Shared building blocks of the PulmoGate services."""
