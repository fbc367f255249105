"""The bundle manifest: what an exported model is, where it came from, and the sha256 of every file in the bundle.

Standard library only (no torch, no transformers, no onnxruntime): the service and the evals read bundles through
this module, and DESIGN.md allows them to import nothing else from ``training`` besides ``training.task``.

A bundle is a folder::

    BUNDLE/model.onnx            the graph (policy: merged decoder with past key values; reward: bias-corrected reward)
    BUNDLE/tokenizer.json ...    the tokenizer files
    BUNDLE/manifest.json         this manifest; ``files`` maps every other file to its sha256

``verify_bundle`` recomputes the hashes, so a missing, truncated or edited file is caught at load time with a message
naming the file, instead of surfacing later as garbage summaries.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.data import atomic_write_text, sha256_file  # stdlib only, like this module

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
RESPONSE_MASK_INPUT = "response_mask"  # a sum-pooled reward graph's extra input: 1 on the response and its EOS
FORMAT_VERSION = 1
KINDS = ("policy", "reward")
TASKS = ("tldr",)  # the news transfer uses the same format rules (training.task); one task name for both


class BundleError(ValueError):
    """A bundle is missing, incomplete, corrupted or of an unknown format; the message names the file and the fix."""


@dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``."""

    kind: str
    """"policy" (a causal LM with past key values) or "reward" (query + summary + EOS -> bias-corrected reward)."""
    name: str
    """Bundle name (its folder name under ``bundles/``); the name the service and the evals use."""
    task: str
    """Query format family: "tldr" (news articles go through the same rules, ``training.task.news_query``)."""
    max_query_tokens: int
    """Query budget in tokens; longer posts are cut at their last newline (``training.task``)."""
    max_response_tokens: int
    """Response budget in tokens (policy: most new tokens; reward: summary tokens including its EOS)."""
    eos_id: int
    """EOS token id (ends a response; the reward is read there)."""
    pad_id: int
    """[PAD] token id (never equal to EOS)."""
    reward_bias: float = 0.0
    """The bias that centres reference summaries at 0 (reward bundles; already subtracted inside the graph when
    ``export["bias_in_graph"]`` is true). 0.0 for policies."""
    source: dict[str, Any] = field(default_factory=dict)
    """Provenance: ``checkpoint`` (path), ``prefsum_sha256`` (hash of its prefsum.json), ``stage``."""
    files: dict[str, str] = field(default_factory=dict)
    """Relative path -> sha256 of every file in the bundle except manifest.json."""
    export: dict[str, Any] = field(default_factory=dict)
    """Export settings: opset, quantize, fp16, versions of the exporting stack, graph facts the engine needs."""
    format_version: int = FORMAT_VERSION
    """Bundle format version; a newer one than this code knows is refused."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BundleError(f"manifest kind must be one of {KINDS}, got {self.kind!r}; re-export the bundle")
        if self.task not in TASKS:
            raise BundleError(f"manifest task must be one of {TASKS}, got {self.task!r}; re-export the bundle")
        for name in ("max_query_tokens", "max_response_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise BundleError(f"manifest {name} must be a positive integer, got {v!r}; re-export the bundle")
        for name in ("eos_id", "pad_id"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise BundleError(f"manifest {name} must be a token id (integer >= 0), got {v!r}")
        if self.eos_id == self.pad_id:
            raise BundleError(f"manifest eos_id and pad_id are both {self.eos_id}; [PAD] must differ from EOS")
        if not isinstance(self.format_version, int) or self.format_version > FORMAT_VERSION:
            raise BundleError(
                f"bundle format_version {self.format_version!r} is newer than this prefsum understands "
                f"({FORMAT_VERSION}); upgrade prefsum or re-export the bundle with this version"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hash_files(bundle_dir: str | Path) -> dict[str, str]:
    """sha256 of every regular file under ``bundle_dir`` except the manifest, keyed by POSIX relative path."""
    root = Path(bundle_dir)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != MANIFEST_FILE and not p.name.startswith("."):
            out[p.relative_to(root).as_posix()] = sha256_file(p)
    return out


def manifest_from_dict(data: Any, where: str = MANIFEST_FILE) -> Manifest:
    """Build a Manifest from parsed JSON, with a clear error for a missing or unknown field."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object; re-export the bundle")
    known = set(Manifest.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise BundleError(f"{where}: unknown field(s) {', '.join(unknown)}; re-export the bundle with this prefsum")
    required = ("kind", "name", "task", "max_query_tokens", "max_response_tokens", "eos_id", "pad_id")
    missing = [k for k in required if k not in data]
    if missing:
        raise BundleError(f"{where}: missing field(s) {', '.join(missing)}; re-export the bundle")
    try:
        return Manifest(**data)
    except BundleError as e:
        raise BundleError(f"{where}: {e}") from None


def read_manifest(bundle_dir: str | Path) -> Manifest:
    """Parse ``bundle_dir/manifest.json`` (no hash check; see ``verify_bundle``)."""
    root = Path(bundle_dir)
    if not root.is_dir():
        raise BundleError(f"bundle folder {root} does not exist; create it with `prefsum export`")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"{path} is missing: {root} is not a bundle; re-export it with `prefsum export`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON ({e}); the bundle is corrupted, re-export it") from None
    return manifest_from_dict(data, str(path))


def verify_bundle(bundle_dir: str | Path) -> Manifest:
    """Read the manifest and check every listed file exists with its recorded sha256; returns the manifest."""
    root = Path(bundle_dir)
    m = read_manifest(root)
    if MODEL_FILE not in m.files:
        raise BundleError(f"{root / MANIFEST_FILE} lists no {MODEL_FILE}; re-export the bundle with `prefsum export`")
    for rel, want in sorted(m.files.items()):
        p = root / rel
        if not p.is_file():
            raise BundleError(f"bundle file {p} is missing; re-export the bundle with `prefsum export`")
        got = sha256_file(p)
        if got != want:
            raise BundleError(
                f"bundle file {p} is corrupted (sha256 {got[:12]}… but the manifest records {want[:12]}…); "
                "re-export the bundle with `prefsum export`"
            )
    return m


def write_manifest(bundle_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(bundle_dir) / MANIFEST_FILE
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path
