"""ONNX Runtime sessions: execution-provider choice and session options (no torch).

``onnxruntime-gpu`` lists CUDAExecutionProvider as available even on a machine without a GPU; asking for it there
logs an error and silently falls back to the CPU. So "auto" asks the CUDA driver itself whether a device exists
before trying CUDA, and creates the CUDA session with ORT's logging muted, then checks which provider it really got.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
from pathlib import Path

PROVIDER_CHOICES = ("auto", "cpu", "cuda")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class ProviderError(RuntimeError):
    """The requested execution provider cannot be used here; the message says why and what to pass instead."""


@functools.cache
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 when there is no driver, no device, or it fails to start)."""
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        try:
            if cuda.cuInit(0) != 0:
                return 0
            n = ctypes.c_int(0)
            if cuda.cuDeviceGetCount(ctypes.byref(n)) != 0:
                return 0
            return int(n.value)
        except AttributeError:
            return 0
    return 0


def pick_providers(requested: str, available: list[str], cuda_devices: int) -> list[str]:
    """Providers to ask ORT for, given the request and what this machine has (a pure function, unit-tested).

    "auto": CUDA (with CPU behind it for unsupported ops) when ORT has the CUDA provider and the driver reports a
    device, else CPU only. "cuda": the same, but an error instead of a silent CPU fallback. "cpu": CPU only.
    """
    if requested not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {requested!r}")
    cuda_ok = CUDA in available and cuda_devices > 0
    if requested == "cpu":
        return [CPU]
    if requested == "cuda" and not cuda_ok:
        why = (
            "this onnxruntime build has no CUDAExecutionProvider (install onnxruntime-gpu)"
            if CUDA not in available
            else "no CUDA device is visible (driver missing or no GPU)"
        )
        raise ProviderError(f"provider 'cuda' requested but {why}; use provider='cpu' or 'auto'")
    return [CUDA, CPU] if cuda_ok else [CPU]


def _preload_cuda_libraries(ort) -> None:
    """Load CUDA/cuDNN from the nvidia-* pip packages when they are installed (CUDA torch wheels bring them), so the
    CUDA provider finds them without LD_LIBRARY_PATH; quietly, since missing ones are reported by the check below."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        preload()


def session_options(threads: int | None):
    import onnxruntime as ort  # noqa: PLC0415

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (or None for ONNX Runtime's default), got {threads}")
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: no per-node placement chatter
    return so


def create_session(model_path: str | Path, *, threads: int | None = None, provider: str = "auto"):
    """An InferenceSession on the best provider allowed by ``provider``; returns (session, provider actually used)."""
    import onnxruntime as ort  # noqa: PLC0415

    providers = pick_providers(provider, ort.get_available_providers(), cuda_device_count() if provider != "cpu" else 0)
    so = session_options(threads)
    if providers[0] == CUDA:
        _preload_cuda_libraries(ort)
        so.log_severity_level = 4  # a failed CUDA library load is reported below, once, not as ORT's error spam
        sess = ort.InferenceSession(str(model_path), so, providers=providers)
        got = sess.get_providers()[0]
        if got != CUDA:
            if provider == "cuda":
                raise ProviderError(
                    "a CUDA device is present but ONNX Runtime could not use it (CUDA/cuDNN libraries missing or of "
                    "the wrong version for this onnxruntime-gpu); use provider='cpu' or install matching libraries"
                )
            sess = ort.InferenceSession(str(model_path), session_options(threads), providers=[CPU])
        return sess, sess.get_providers()[0]
    sess = ort.InferenceSession(str(model_path), so, providers=[CPU])
    return sess, CPU
