"""Checkpoints on disk: Hugging Face format (safetensors) + tokenizer + ``prefsum.json``, written atomically; and the
resume state of a run in progress.

Layout of a finished stage::

    OUT/config.json, model.safetensors, tokenizer files     (loadable with from_pretrained)
    OUT/prefsum.json                                         (stage, full config, data hashes, metrics, parent)

A run in progress keeps ``OUT.resume/state.pt`` (model, optimizer, step, metric history) next to OUT; it is replaced
atomically at every save and removed when the stage finishes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from training.data import atomic_write_text, current_umask, sha256_file

META_FILE = "prefsum.json"


def read_meta(ckpt: str | Path) -> dict[str, Any]:
    path = Path(ckpt) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt} is not a prefsum checkpoint (no {META_FILE}); train it with `prefsum train`")
    return json.loads(path.read_text(encoding="utf-8"))


def make_temp_dir(out: Path) -> Path:
    """A temp folder beside ``out`` (same filesystem, so the final rename is atomic) with normal permissions
    (mkdtemp makes 0700, which would lock out a service running as another user)."""
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def _normal_file_modes(folder: Path) -> None:
    """Some writers (safetensors) leave files 0600; give every file the mode open() would."""
    mode = 0o666 & ~current_umask()
    for f in folder.iterdir():
        if f.is_file():
            os.chmod(f, mode)


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out`` (beside it, same filesystem): a reader sees the old folder or the
    new one, never a half-written mix; the previous one is removed."""
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def save_checkpoint(model, tokenizer, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Write model + tokenizer + prefsum.json into a temp folder beside ``out_dir``, then swap it in."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = dict(meta) | {"saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        _normal_file_modes(tmp)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def resume_path(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    return out.with_name(out.name + ".resume") / "state.pt"


def save_state(out_dir: str | Path, state: dict[str, Any]) -> None:
    """Atomically save the resume state of a run in progress."""
    import torch  # noqa: PLC0415

    path = resume_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(out_dir: str | Path) -> dict[str, Any] | None:
    import torch  # noqa: PLC0415

    path = resume_path(out_dir)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def clear_state(out_dir: str | Path) -> None:
    shutil.rmtree(resume_path(out_dir).parent, ignore_errors=True)


def start_run(out_dir: str | Path, model, optimizer, dist, *, resume: bool, stage: str, total_steps: int):
    """Common start of every training loop: restore the resume state when asked (and present), wrap model and
    optimizer for distribution, and start a fresh metrics log unless resuming.

    Returns ``(model, optimizer, step, history, metrics_path)``.
    """
    out = Path(out_dir)
    step, history = 0, []
    state = load_state(out) if resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = state["step"], state["history"]
        dist.log(f"resuming {stage} from step {step}/{total_steps}")
    model, optimizer = dist.prepare(model, optimizer)
    metrics_path = out.with_name(out.name + ".metrics.jsonl")
    if step == 0 and dist.is_main:
        metrics_path.unlink(missing_ok=True)
    return model, optimizer, step, history, metrics_path


def write_metrics_line(path: str | Path, row: dict[str, Any]) -> None:
    """Append one JSON line of metrics (a log, so append is right; each line is complete or absent)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


__all__ = [
    "META_FILE",
    "atomic_write_text",
    "clear_state",
    "load_state",
    "read_meta",
    "resume_path",
    "save_checkpoint",
    "save_state",
    "start_run",
    "sha256_file",
    "write_metrics_line",
]
