"""Structured JSON logs; patient identifiers are dropped before anything is written."""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from pulmogate.common.dicom.quiet import keep_values_out_of_logs
from pulmogate.common.phi import names_patient_data


def drop_phi(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Remove any key that names patient data (``pulmogate.common.phi``), whoever passed it."""
    for key in [k for k in event_dict if names_patient_data(k)]:
        event_dict.pop(key)
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json", service: str = "") -> None:
    """Route structlog and stdlib logging to stderr as JSON (or console) lines."""
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
        drop_phi,
    ]
    if service:
        structlog.contextvars.bind_contextvars(service=service)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        # Below the level, a call returns at the first processor (the receiver logs a debug
        # line per instance; the whole chain cost 0.1 ms each time on two busy cores).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pynetdicom logs dataset contents at DEBUG (patient data): keep it at WARNING.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    for noisy in ("aio_pika", "aiormq", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    keep_values_out_of_logs()  # pydicom and highdicom quote attribute values in warnings
