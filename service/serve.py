"""``prefsum serve``: settings from flags and PREFSUM_* variables, a pre-flight check of every bundle, then uvicorn.

The pre-flight check verifies each bundle's files against its manifest before uvicorn starts, so a missing or
corrupted file stops ``prefsum serve`` with one line naming the file (exit 2) instead of a traceback from inside the
server's start-up. Worker processes (``--workers N``) get the settings through the environment and build the app
with ``service.app:app_from_env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.settings import Settings, load_settings, to_environ


def preflight(settings: Settings) -> dict[str, str]:
    """Verify every bundle under ``settings.bundles``; returns name -> kind. Raises a ValueError naming the problem."""
    from training.manifest import MANIFEST_FILE, BundleError, verify_bundle  # noqa: PLC0415

    root = Path(settings.bundles)
    if not root.is_dir():
        raise BundleError(
            f"bundles folder {root} does not exist; export checkpoints into it with `prefsum export --checkpoint DIR "
            f"--out {root}` or pass --bundles"
        )
    found = {}
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not sub.name.startswith(".") and (sub / MANIFEST_FILE).is_file():
            found[sub.name] = verify_bundle(sub).kind
    if not found:
        raise BundleError(
            f"no bundles in {root} (no sub-folder with a {MANIFEST_FILE}); export one with `prefsum export "
            f"--checkpoint DIR --out {root}`"
        )
    for setting, kind in (("default_policy", "policy"), ("default_reward", "reward")):
        wanted = getattr(settings, setting)
        if wanted is not None and found.get(wanted) != kind:
            have = ", ".join(n for n, k in found.items() if k == kind) or "none"
            raise ValueError(f"{setting} {wanted!r} is not a {kind} bundle in {root} ({kind} bundles: {have})")
    return found


def serve(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    """Run the service until interrupted; ``flags`` are setting overrides (None = not given)."""
    import uvicorn  # noqa: PLC0415

    settings = load_settings(flags, environ)
    bundles = preflight(settings)
    if settings.workers > 1 and settings.port == 0:
        raise ValueError("--port 0 (any free port) works with one worker only; give a port for --workers > 1")
    os.environ.update(to_environ(settings))
    print(
        f"prefsum serve: {len(bundles)} bundle(s) in {settings.bundles} "
        f"({', '.join(f'{n}:{k}' for n, k in bundles.items())}); database {settings.db}",
        flush=True,
    )
    uvicorn.run(
        "service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0
