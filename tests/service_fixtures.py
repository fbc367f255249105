"""Fixtures for the service tests: bundles exported from tiny random-init models, and a real server process.

- ``build_checkpoints``: two tiny Llama policies (different seeds) and a reward model on the first one's backbone,
  saved as checkpoints with prefsum.json (stage "sft" / "rm", budgets, a known reward bias), through the same code
  the training stages use.
- ``export_bundles``: ``training.export.export_bundle`` for each, into one bundles folder (the pipeline's layout).
- ``Server``: ``python -m prefsum serve --port 0`` as a subprocess on 127.0.0.1; the port is read from uvicorn's
  start-up line; ``stop()`` sends SIGTERM and waits, ``restart()`` starts it again on the same database.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ADMIN_TOKEN = "test-admin-token-0123456789"
QUERY_BUDGET = 96
RESPONSE_BUDGET = 12
REWARD_BIAS = 0.25
ROOT = Path(__file__).resolve().parent.parent


def build_checkpoints(tokenizer, out: Path) -> dict[str, Path]:
    """policy-a, policy-b (tiny Llama, seeds 0 and 1) and rm (policy-a's backbone + a scalar head, stage "rm")."""
    import torch

    from tests.helpers import tiny_llama
    from training.checkpoint import save_checkpoint
    from training.reward import build_reward_model

    torch.set_num_threads(1)
    budgets = {"max_query_tokens": QUERY_BUDGET, "max_response_tokens": RESPONSE_BUDGET}
    paths = {}
    for name, seed in (("policy-a", 0), ("policy-b", 1)):
        model = tiny_llama(tokenizer, n_layer=1, d_model=32, n_head=2, max_positions=256, seed=seed)
        paths[name] = save_checkpoint(model, tokenizer, out / name, {"stage": "sft", "config": {"sft": budgets}})
    torch.manual_seed(0)
    rm = build_reward_model(paths["policy-a"])
    paths["rm"] = save_checkpoint(
        rm, tokenizer, out / "rm", {"stage": "rm", "reward_bias": REWARD_BIAS, "config": {"rm": budgets}}
    )
    return paths


def export_bundles(checkpoints: dict[str, Path], bundles: Path) -> Path:
    import torch

    from training.export import export_bundle

    torch.set_num_threads(1)
    for name, ckpt in checkpoints.items():
        export_bundle(ckpt, bundles, name=name)
    return bundles


class Server:
    """``prefsum serve`` in a subprocess, on 127.0.0.1 and a free port."""

    def __init__(self, bundles: Path, db: Path, *, data_dir: Path | None = None, eval_dir: Path | None = None, **env):
        self.bundles, self.db = Path(bundles), Path(db)
        self.env = {
            "PREFSUM_ADMIN_TOKEN": ADMIN_TOKEN,
            "PREFSUM_THREADS": "1",
            "PREFSUM_PROVIDER": "cpu",
            "PREFSUM_LOG_LEVEL": "warning",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if data_dir is not None:
            self.env["PREFSUM_DATA_DIR"] = str(data_dir)
        if eval_dir is not None:
            self.env["PREFSUM_EVAL_DIR"] = str(eval_dir)
        self.env |= {
            k.upper() if k.upper().startswith("PREFSUM_") else f"PREFSUM_{k.upper()}": str(v) for k, v in env.items()
        }
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFSUM_")} | self.env
        # uvicorn logs its start-up line at info; keep our level for everything else.
        cmd = [sys.executable, "-m", "prefsum", "serve", "--bundles", str(self.bundles), "--db", str(self.db)]
        cmd += ["--port", "0", "--host", "127.0.0.1"]
        env["PREFSUM_LOG_LEVEL"] = "info"
        self.log = []
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        found = threading.Event()

        def reader() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    found.set()
            found.set()

        threading.Thread(target=reader, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.2):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start in time:\n" + "\n".join(self.log[-30:]))
        if self.port is None:
            self.proc.wait(10)
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n" + "\n".join(self.log[-30:]))
        return self

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def client(self, token: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 60.0), **kw)

    def admin(self) -> httpx.Client:
        return self.client(ADMIN_TOKEN)


_CACHE: dict[str, object] = {}


def service_bundles(tokenizer, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """(bundles folder, checkpoints) built once per test session, whichever service test module asks first."""
    if "bundles" not in _CACHE:
        root = tmp_path_factory.mktemp("service_models")
        checkpoints = build_checkpoints(tokenizer, root / "checkpoints")
        _CACHE["bundles"] = (export_bundles(checkpoints, root / "bundles"), checkpoints)
    return _CACHE["bundles"]  # type: ignore[return-value]


def post_item(i: int) -> dict[str, str]:
    """A distinct TL;DR item per i (words the tiny tokenizer's corpus knows, so queries stay short)."""
    return {
        "subreddit": "relationships",
        "title": f"My boyfriend ({20 + i}M) wants to move",
        "post": f"My boyfriend ({20 + i}M) and I have been together for {i % 9 + 1} years.\n"
        f"He wants to move to Denver for a job that pays ${50 + i},000 a year.\nShould I go?",
    }
