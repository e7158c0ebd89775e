"""DICOM helpers shared by the services (transfer syntaxes, SCU)."""
