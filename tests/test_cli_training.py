"""Training stages through the real command line: a run killed with SIGKILL resumes with --resume and ends with the
same metrics as a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from prefsum.cli import main


def prefsum(*args: str, **kw) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-m", "prefsum", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


SETTINGS = [
    "--set",
    "sft.steps=120",
    "--set",
    "sft.eval_every=20",
    "--set",
    "sft.batch_size=8",
    "--set",
    "sft.eval_examples=8",
    "--set",
    "sft.n_samples=0",
    "--set",
    "sft.threads=1",
    "--set",
    "sft.max_query_tokens=96",
    "--set",
    "sft.max_response_tokens=24",
]


def sft_args(d, out):
    return ["train", "sft", "--base", str(d / "base"), "--data", str(d), "--out", str(out), *SETTINGS]


def test_sigkilled_sft_resumes_to_the_same_metrics(base_and_data):
    d = base_and_data
    full = prefsum(*sft_args(d, d / "cli_full"))
    assert full.wait(timeout=300) == 0, full.stdout.read()

    killed = prefsum(*sft_args(d, d / "cli_killed"))
    state = d / "cli_killed.resume" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    if (d / "cli_killed").exists():
        pytest.fail("the run finished before it could be killed; make it longer")
    assert state.exists()

    resumed = prefsum(*sft_args(d, d / "cli_killed"), "--resume")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resuming SFT from step" in output
    a = json.loads((d / "cli_full" / "prefsum.json").read_text())
    b = json.loads((d / "cli_killed" / "prefsum.json").read_text())
    assert [h["step"] for h in a["history"]] == [h["step"] for h in b["history"]]
    for x, y in zip(a["history"], b["history"], strict=True):
        assert x["val/loss"] == pytest.approx(y["val/loss"], rel=1e-5)
        assert x["train/loss"] == pytest.approx(y["train/loss"], rel=1e-5)


def test_missing_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["train", "rm", "--run", str(tmp_path)]) == 2
    assert "prefsum label" in capsys.readouterr().err
    assert main(["train", "pretrain", "--run", str(tmp_path), "--set", "world.dir=" + json.dumps(str(tmp_path))]) == 2
    assert "prefsum data synth" in capsys.readouterr().err
    assert main(["train", "sft", "--set", "sft.nope=1"]) == 2
    assert "unknown field 'sft.nope'" in capsys.readouterr().err
