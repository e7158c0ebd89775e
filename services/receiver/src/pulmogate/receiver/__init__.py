"""PulmoGate receiver: DICOM C-ECHO/C-STORE SCP and series completion."""
