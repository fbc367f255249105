"""``prefsum pipeline`` end to end on a tiny profile made of --set overrides (tiny world, ~20 pretraining steps, a few
dozen SFT steps, one label round of 50 posts, a tiny RM, 4 PPO iterations, a handful of eval items).

The tests in this module share one run folder and build on each other, in order:
1. a first run does every stage and writes bundles, judgments and the report;
2. a second run skips every stage and rewrites no file;
3. a changed PPO field, with the run SIGKILLed during PPO: the next run resumes PPO where it stopped and redoes only
   what follows it (bundles of unchanged checkpoints are kept);
4. ``--force sft --until label`` redoes sft and label (and gets the same SFT metrics: the stages are deterministic).
"""

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from prefsum import pipeline
from prefsum.cli import main

STAGES = ["world", "tokenizer", "pretrain", "sft", "label", "rm", "ppo", "export", "eval", "report"]


def tiny_settings(world: Path) -> list[str]:
    sets = {
        "world.dir": json.dumps(str(world)),
        "world.size": '"tiny"',
        "tokenizer.vocab_size": 1024,
        "model.d_model": 64,
        "model.n_head": 2,
        "model.copy_circuit": "false",
        "model.max_positions": 512,
        "pretrain.steps": 20,
        "pretrain.batch_size": 4,
        "pretrain.seq_len": 64,
        "pretrain.warmup_steps": 2,
        "pretrain.eval_every": 10,
        "pretrain.eval_batches": 1,
        "pretrain.copy_fraction": 0.0,
        "pretrain.threads": 1,
        "sft.steps": 40,
        "sft.batch_size": 4,
        "sft.eval_every": 10,
        "sft.eval_examples": 8,
        "sft.n_samples": 0,
        "sft.threads": 1,
        "label.rounds": 1,
        "label.posts": 50,
        "label.threads": 1,
        "rm.epochs": 1.0,
        "rm.batch_size": 4,
        "rm.eval_every": 10,
        "rm.threads": 1,
        "ppo.steps": 4,
        "ppo.rollout_batch_size": 4,
        "ppo.minibatches": 2,
        "ppo.ppo_epochs": 1,
        "ppo.eval_every": 2,
        "ppo.n_samples": 0,
        "ppo.threads": 1,
        "eval.n": 8,
        "eval.news_n": 4,
        "eval.threads": 1,
        "eval.best_of": 2,
    }
    for stage in ("sft", "label", "rm", "ppo"):
        sets[f"{stage}.max_query_tokens"] = 400
        sets[f"{stage}.max_response_tokens"] = 48
    return [arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    args = ["--config", "configs/tiny-scratch.toml", "--out", str(d / "out"), *tiny_settings(d / "world")]
    return {"out": d / "out", "world": d / "world", "args": args}


def pipeline_cli(run_dir, capsys, *extra: str) -> tuple[int, str, str]:
    rc = main(["pipeline", *run_dir["args"], *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def stage_lines(err: str) -> dict[str, str]:
    """The final progress line of each stage: 'skipped (up to date)', 'done in 3.2s', 'not available'..."""
    lines = {}
    for line in err.splitlines():
        for i, name in enumerate(STAGES):
            prefix = f"[{i + 1}/{len(STAGES)}] {name} "
            if line.startswith(prefix):
                rest = line[len(prefix) :]
                if not rest.endswith("..."):  # the "running: ..." announcement
                    lines[name] = rest
    return lines


def ran(lines: dict[str, str]) -> list[str]:
    return [s for s in STAGES if lines.get(s, "").startswith("done in")]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: (mtime_ns, sha256)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def history(ckpt: Path) -> list[tuple[int, float]]:
    return [(h["step"], h["train/loss"]) for h in read_json(ckpt / "prefsum.json")["history"]]


# ----------------------------------------------------------------------------------------------- end to end


def test_first_run_builds_every_stage(run_dir, capsys):
    out = run_dir["out"]
    rc, stdout, err = pipeline_cli(run_dir, capsys)
    assert rc == 0, err[-3000:]
    lines = stage_lines(err)
    assert ran(lines) == STAGES, lines
    for name in STAGES:
        rec = read_json(out / ".pipeline" / f"{name}.json")
        assert rec["status"] == "done" and len(rec["hash"]) == 64
    # bundles: three policies and the reward model, each verified against its own file hashes
    from training.manifest import verify_bundle

    kinds = {name: verify_bundle(out / "bundles" / name).kind for name in ("pretrained", "sft", "ppo", "rm")}
    assert kinds == {"pretrained": "policy", "sft": "policy", "ppo": "policy", "rm": "reward"}
    assert sorted(p.name for p in (out / "bundles").iterdir()) == ["ppo", "pretrained", "rm", "sft"]
    # the checkpoint each bundle came from is the stage's own output
    for name, ckpt in [("pretrained", "pretrained"), ("sft", "sft"), ("ppo", "ppo"), ("rm", "rm")]:
        manifest = read_json(out / "bundles" / name / "manifest.json")
        digest = hashlib.sha256((out / ckpt / "prefsum.json").read_bytes()).hexdigest()
        assert manifest["source"]["prefsum_sha256"] == digest
    # the report names the three policies beside the reference, on TL;DR and news
    report = read_json(out / "eval" / "report.json")
    assert {"pretrained", "sft", "ppo", "best_of_2"} <= set(report["tldr"])
    assert {"pretrained", "sft", "ppo", "ref"} <= set(report["news"])
    judged = [json.loads(line) for line in (out / "eval" / "judgments" / "tldr-sim.jsonl").read_text().splitlines()]
    assert {"pretrained", "sft", "ppo"} <= {s["policy"] for c in judged for s in c["summaries"]}
    assert all("ref" in {s["policy"] for s in c["summaries"]} for c in judged)
    # eval.n = 8 posts per policy (a share of pairs gets a second labeler, so judgments can be more)
    assert len({c["info"]["id"] for c in judged if "sft" in {x["policy"] for x in c["summaries"]}}) == 8
    assert report["tldr"]["sft"]["n"] >= 8
    # the CLI prints where the report is and its summary
    assert f"report: {out / 'eval' / 'report.html'}" in stdout
    assert "preferred over the reference" in stdout and "news transfer" in stdout
    assert "pipeline: 10 stage(s) ran, 0 skipped" in err


def test_second_run_skips_everything_and_writes_nothing(run_dir, capsys):
    out = run_dir["out"]
    before = snapshot(out)
    rc, _, err = pipeline_cli(run_dir, capsys)
    assert rc == 0, err[-3000:]
    assert stage_lines(err) == {s: "skipped (up to date)" for s in STAGES}
    assert snapshot(out) == before


def _pipeline_subprocess(args: list[str]) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "prefsum", "pipeline", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_changed_ppo_config_killed_during_ppo_resumes_and_redoes_only_what_follows(run_dir, capsys):
    out = run_dir["out"]
    args = [*run_dir["args"], "--set", "ppo.lr=2e-6"]
    before = snapshot(out)
    proc = _pipeline_subprocess(args)
    state = out / "ppo.resume" / "state.pt"
    deadline = time.time() + 240
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate(timeout=60)[0]
    assert state.exists(), f"PPO never saved a resume state before the kill:\n{output[-3000:]}"
    assert read_json(out / ".pipeline" / "ppo.json")["status"] == "running"
    lines = stage_lines(output)
    assert {s: lines.get(s) for s in STAGES[:6]} == {s: "skipped (up to date)" for s in STAGES[:6]}, lines

    rc, stdout, err = pipeline_cli(run_dir, capsys, "--set", "ppo.lr=2e-6")
    assert rc == 0, err[-3000:]
    lines = stage_lines(err)
    assert [s for s in STAGES if lines[s] == "skipped (up to date)"] == STAGES[:6]
    assert ran(lines) == STAGES[6:]
    assert "[7/10] ppo resuming" in err
    assert "resuming PPO from iteration 2/4" in stdout + err  # the trainer's own log line
    ppo = read_json(out / "ppo" / "prefsum.json")
    assert ppo["config"]["ppo"]["lr"] == 2e-6
    assert [h["step"] for h in ppo["history"]][-1] == 4
    # finished stages untouched: every checkpoint before PPO and the bundles of unchanged checkpoints are kept
    after = snapshot(out)
    for folder in ("tokenizer", "pretrained", "sft", "rm", "comparisons", "bundles/pretrained", "bundles/sft"):
        kept = {k: v for k, v in before.items() if k.startswith(folder + "/")}
        assert kept and all(after.get(k) == v for k, v in kept.items()), folder
    assert after["bundles/ppo/manifest.json"] != before["bundles/ppo/manifest.json"]
    assert after["eval/report.json"] != before["eval/report.json"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_run_script_prints_the_report_summary_and_serves_the_bundles(run_dir):
    # scripts/run.sh is what `make run` runs: the pipeline (all up to date here), the summary, then the service
    import httpx

    out, port = run_dir["out"], _free_port()
    sets = tiny_settings(run_dir["world"]) + ["--set", "ppo.lr=2e-6"]
    proc = subprocess.Popen(
        ["bash", "scripts/run.sh", str(run_dir["world"]), str(out), *sets],
        cwd=Path(__file__).resolve().parent.parent,
        env=os.environ | {"PORT": str(port), "OMP_NUM_THREADS": "1", "CONFIG": "configs/tiny-scratch.toml"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline, health = time.time() + 120, None
        while time.time() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health == 200, "".join(lines)[-3000:]
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert httpx.get(f"http://127.0.0.1:{port}/label", timeout=10).status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    text = "".join(lines)
    assert "pipeline: 0 stage(s) ran, 10 skipped" in text
    assert f"report: {out / 'eval' / 'report.html'}" in text
    summary = [line for line in text.splitlines() if line.startswith(("TL;DR, preferred", "ground truth", "news"))]
    assert len(summary) == 3, text[-3000:]
    assert f"http://127.0.0.1:{port}/label" in text and f"http://127.0.0.1:{port}/schema" in text
    assert {(m["name"], m["kind"]) for m in models["models"]} == {
        ("pretrained", "policy"),
        ("sft", "policy"),
        ("ppo", "policy"),
        ("rm", "reward"),
    }
    assert (out / "service" / "prefsum.db").is_file()


def test_force_redoes_the_stage_and_what_follows(run_dir, capsys):
    out = run_dir["out"]
    sft_before = read_json(out / "sft" / "prefsum.json")
    rc, _, err = pipeline_cli(run_dir, capsys, "--set", "ppo.lr=2e-6", "--force", "sft", "--until", "label")
    assert rc == 0, err[-3000:]
    lines = stage_lines(err)
    assert list(lines) == STAGES[:5]  # --until label: nothing after it runs
    assert [s for s in STAGES[:3] if lines[s] == "skipped (up to date)"] == STAGES[:3]
    assert ran(lines) == ["sft", "label"]
    assert "[4/10] sft redoing (forced)" in err
    sft_after = read_json(out / "sft" / "prefsum.json")
    assert sft_after["saved_at"] >= sft_before["saved_at"] and sft_after != sft_before
    # redone from scratch with the same inputs and seed: the same training curve
    assert [h["step"] for h in sft_after["history"]] == [h["step"] for h in sft_before["history"]]
    for a, b in zip(sft_after["history"], sft_before["history"], strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-5)


# ----------------------------------------------------------------------------------------------- the parts


def test_a_missing_stage_stops_the_pipeline_with_a_clear_message(run_dir, capsys, monkeypatch):
    # the ppo stage as it was before its code landed: everything before it still runs (here: is skipped), then stop
    out = run_dir["out"]
    gone = "PPO (training.ppo) has not landed yet"
    stages = tuple(dataclasses.replace(s, missing=lambda run: gone) if s.name == "ppo" else s for s in pipeline.STAGES)
    monkeypatch.setattr(pipeline, "STAGES", stages)
    record_before = (out / ".pipeline" / "ppo.json").read_bytes()
    rc, _, err = pipeline_cli(run_dir, capsys, "--set", "ppo.lr=2e-6")
    assert rc == 1
    assert "note: not available yet: ppo, export, eval, report" not in err  # only ppo is missing here
    assert "note: not available yet: ppo; the pipeline will stop before ppo" in err
    assert "[7/10] ppo not available" in err
    assert f"stage ppo (7/10) cannot run: {gone}" in err and "--until rm" in err
    assert "[8/10]" not in err
    assert (out / ".pipeline" / "ppo.json").read_bytes() == record_before


def test_one_pipeline_at_a_time_per_folder(tmp_path, capsys):
    # a second process holding the lock (as a running pipeline does) makes the pipeline refuse before any stage
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from prefsum.pipeline import exclusive; import sys, pathlib\n"
            "with exclusive(pathlib.Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()",
            str(tmp_path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        rc = main(["pipeline", "--out", str(tmp_path), "--set", f"world.dir={json.dumps(str(tmp_path / 'w'))}"])
        assert rc == 1
        assert f"another pipeline is running in {tmp_path}" in capsys.readouterr().err
        assert not (tmp_path / "w").exists() and sorted(os.listdir(tmp_path / ".pipeline")) == ["lock"]
    finally:
        holder.communicate("", timeout=30)
    # released when its holder ends: taking it again works
    with pipeline.exclusive(tmp_path):
        pass


def test_missing_code_is_detected_by_import():
    assert pipeline._missing("training.no_such_module", ["f"], "X") == "X (training.no_such_module) has not landed yet"
    assert pipeline._missing("training.ppo", ["run_ppo", "nope"], "PPO") == "PPO (training.ppo) has no nope yet"
    assert pipeline._missing("training.ppo", ["run_ppo"], "PPO") is None


def test_force_and_until_are_checked(tmp_path, capsys):
    assert main(["pipeline", "--out", str(tmp_path), "--force", "report", "--until", "sft"]) == 2
    assert "--force report comes after --until sft" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pipeline", "--out", str(tmp_path), "--force", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    assert not (tmp_path / ".pipeline").exists()


def test_fingerprints(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"abc")
    assert pipeline.fingerprint(f) == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"weights")
    (ckpt / "prefsum.json").write_bytes(b"abc")
    assert pipeline.fingerprint(ckpt) == "prefsum.json:" + hashlib.sha256(b"abc").hexdigest()
    plain = tmp_path / "plain"
    (plain / "sub").mkdir(parents=True)
    (plain / "sub" / "x").write_bytes(b"abc")
    (plain / ".x.tmp").write_bytes(b"half written")  # temp files of atomic writes are not content
    line = "sub/x\0" + hashlib.sha256(b"abc").hexdigest() + "\n"
    assert pipeline.fingerprint(plain) == "tree:" + hashlib.sha256(line.encode()).hexdigest()
    assert pipeline.fingerprint(tmp_path / "nope") == "missing"


def test_durations_and_summary_lines():
    assert [pipeline.fmt_seconds(s) for s in (4.24, 192, 3725)] == ["4.2s", "3m12s", "1h02m05s"]
    report = {
        "tldr": {
            "sft": {"win_rate": 0.34, "lc_win_rate": 0.31, "gold": {"fact_recall": 0.78, "wrong_value_rate": 0.12}},
            "lead2": {"win_rate": 0.2, "lc_win_rate": None},
            "pretrained": {"win_rate": 0.14, "lc_win_rate": 0.152, "gold": {"fact_recall": 0.5, "wrong_value_rate": 0}},
        },
        "news": {"ref": {"axes": {"overall": 6.5}, "lc_overall": 6.5}, "sft": {"axes": {"overall": 4}}},
    }
    assert pipeline.summary_lines(report) == [
        "TL;DR, preferred over the reference (raw / length-controlled): pretrained 0.14 / 0.15, sft 0.34 / 0.31, "
        "lead2 0.20 / n/a",
        "ground truth (fact recall / wrong-value rate): pretrained 0.50 / 0.00, sft 0.78 / 0.12",
        "news transfer, overall 1-7 (length-controlled): sft 4.00 (n/a), ref 6.50 (6.50)",
    ]
