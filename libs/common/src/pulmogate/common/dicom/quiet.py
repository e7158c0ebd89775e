"""Keep attribute values out of the logs: pydicom and highdicom quote them in their warnings."""

import logging
import warnings

from pydicom import config

# pydicom warns "Invalid value for VR DA: 'PHIBDAY'" (and logs it) as it converts a value
# that breaks its VR; highdicom logs a patient name it finds suspicious. Both quote values.
VALUE_QUOTING_LOGGERS = ("pydicom", "highdicom")


def keep_values_out_of_logs() -> None:
    """Turn off pydicom's validation of values read and written (its warnings quote them)
    and let only errors through the loggers of pydicom and highdicom (theirs quote values).

    Values PulmoGate copies into its outputs are checked by PulmoGate itself, which names
    the attribute and never the value. Idempotent: every service calls it at start (through
    ``configure_logging``), the volume loader and the output builders before they work.
    """
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    for name in VALUE_QUOTING_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(pydicom|highdicom)(\.|$)")
