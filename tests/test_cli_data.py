"""The data commands end to end: synth a tiny world, validate every file with the CLI, read its stats as JSON."""

import json

from prefsum.cli import main


def test_synth_validate_stats(tmp_path, capsys):
    out = tmp_path / "world"
    assert main(["data", "synth", "--out", str(out), "--seed", "3", "--size", "tiny"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["seed"] == 3 and summary["size"] == "tiny"
    for split in ("train", "valid", "test"):
        assert main(["data", "validate", str(out / "tldr" / f"{split}.jsonl"), "--format", "tldr"]) == 0
    for split in ("valid", "test"):
        assert main(["data", "validate", str(out / "news" / f"{split}.jsonl"), "--format", "cnndm"]) == 0
    capsys.readouterr()
    assert main(["data", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (
        stats["n_posts"]
        == summary["counts"]["tldr/train"] + summary["counts"]["tldr/valid"] + summary["counts"]["tldr/test"]
    )
    assert 0.65 <= stats["labeler_agreement"] <= 0.85


def test_data_errors_are_usage_errors(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "w"), "--size", "huge"]) == 2
    assert "unknown --size 'huge'" in capsys.readouterr().err
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "prefsum data synth" in capsys.readouterr().err
