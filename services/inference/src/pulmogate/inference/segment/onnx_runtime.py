"""ONNX Runtime sessions: execution provider choice and one cached session per graph."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import onnx
import onnxruntime as ort

log = logging.getLogger(__name__)

PROVIDER_SETTINGS = ("auto", "cuda", "tensorrt", "cpu")
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_sessions: dict[tuple[str, str], ort.InferenceSession] = {}
_lock = threading.Lock()


def providers_for(setting: str = "auto") -> list[str]:
    """Execution providers for a setting, in order of preference, CPU always last.

    auto uses CUDA when this onnxruntime build has it. cuda or tensorrt where the build
    lacks them falls back to the CPU with a warning (the service keeps working, slower);
    onnxruntime itself runs any operator a GPU provider cannot on the CPU.
    """
    if setting not in PROVIDER_SETTINGS:
        raise ValueError(f"execution provider must be one of {PROVIDER_SETTINGS}, not {setting!r}")
    available = set(ort.get_available_providers())
    if setting == "auto":
        setting = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    wanted = _PROVIDERS[setting]
    if wanted[0] not in available:
        log.warning(
            "%s is not available in this onnxruntime build (%s); running on the CPU",
            wanted[0],
            ", ".join(sorted(available)),
        )
    return [p for p in wanted if p in available]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cached_session(
    key: str, build: Callable[[], onnx.ModelProto], setting: str = "auto"
) -> ort.InferenceSession:
    """The process-wide session for graph ``key``, built and created on first use only."""
    with _lock:
        session = _sessions.get((key, setting))
        if session is None:
            model = build()
            onnx.checker.check_model(model)
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # As many threads as CPUs this process may use (a replica pinned to one CPU gets
            # one), not onnxruntime's default of every core of the machine.
            options.intra_op_num_threads = usable_cpus()
            session = ort.InferenceSession(
                model.SerializeToString(), sess_options=options, providers=providers_for(setting)
            )
            log.info("onnx session %s on %s", key, session.get_providers()[0])
            _sessions[(key, setting)] = session
        return session


def session_providers() -> dict[str, str]:
    """The provider each cached session runs on first, by graph key (for checks and benches)."""
    with _lock:
        return {key: session.get_providers()[0] for (key, _), session in _sessions.items()}


def releasing_run_options() -> ort.RunOptions:
    """Run options that shrink the CPU memory arena when the run ends.

    The arena otherwise keeps the largest working set any run needed (the lung growth of
    a long series: hundreds of MB) for the life of the worker."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return options
