"""PulmoGate operator tools: user, license, send and demo commands; the chest CT phantom."""
