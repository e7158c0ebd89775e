"""PulmoGate inference: chest CT lung and lesion analysis."""
