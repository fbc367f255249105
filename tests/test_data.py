"""Loaders and validators for the public formats: real-shaped records load as typed records; malformed ones are
reported as PATH:LINE: field: problem, every one of them, by the library and by `prefsum data validate`."""

import json

import pytest

from prefsum.cli import main
from training.data import (
    ArticleInfo,
    AxisEval,
    Comparison,
    DataError,
    NewsArticle,
    PostInfo,
    TldrPost,
    load,
    load_comparisons,
    sniff_format,
    to_json,
    validate_file,
    write_jsonl,
)

TLDR = {
    "id": "t3_1abc",
    "subreddit": "relationships",
    "title": "Me [25F] and my bf",
    "post": "Long post.\nMore.",
    "summary": " bf wants to move",
}
# Shaped like a record of the public comparisons release (info has nulls for the other shape's keys).
COMPARISON = {
    "info": {
        "id": "t3_1abc",
        "post": "Long post.",
        "title": "Me [25F]",
        "subreddit": "relationships",
        "site": None,
        "article": None,
    },
    "summaries": [
        {"text": " first summary", "policy": "sup2", "note": None},
        {"text": " second summary", "policy": "ref", "note": "ok"},
    ],
    "choice": 1,
    "worker": "w1",
    "batch": "batch3",
    "split": "train",
    "extra": {"confidence": 7},
}
NEWS_COMPARISON = COMPARISON | {
    "info": {
        "id": "dm-123",
        "article": "The mayor said...",
        "site": "dailymail",
        "title": "Mayor speaks",
        "post": None,
        "subreddit": None,
    },
    "split": "valid2",
}
AXIS = {
    "info": {"id": "t3_1abc", "post": "Long post.", "title": "T", "subreddit": "pets"},
    "split": "valid1",
    "summary": {
        "text": " a summary",
        "policy": "ppo_xl",
        "note": None,
        "axes": {"overall": 6, "accuracy": 7, "coverage": 5, "coherence": None},
    },
    "worker": "w9",
    "batch": "batch12",
}
CNNDM = {"id": "abc123", "article": "Article text.", "highlights": "Highlight one.\nHighlight two."}


def write(tmp_path, name, lines, raw: bytes | None = None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(
            "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8"
        )
    return path


def test_real_shaped_records_load_as_typed_records(tmp_path):
    t = load(write(tmp_path, "t.jsonl", [TLDR]), "tldr")
    assert t == [TldrPost("t3_1abc", "relationships", "Me [25F] and my bf", "Long post.\nMore.", " bf wants to move")]
    c = load_comparisons(write(tmp_path, "c.jsonl", [COMPARISON, NEWS_COMPARISON]))
    assert isinstance(c[0], Comparison) and isinstance(c[0].info, PostInfo)
    assert c[0].preferred.policy == "ref" and c[0].confidence == 7 and c[0].summaries[0].note is None
    assert isinstance(c[1].info, ArticleInfo) and c[1].info.site == "dailymail" and c[1].split == "valid2"
    a = load(write(tmp_path, "a.jsonl", [AXIS]), "axis")[0]
    assert isinstance(a, AxisEval) and a.axes.overall == 6 and a.axes.coherence is None
    n = load(write(tmp_path, "n.jsonl", [CNNDM]), "cnndm")[0]
    assert n == NewsArticle("abc123", "Article text.", "Highlight one.\nHighlight two.")


def test_round_trip_through_to_json(tmp_path):
    records = load(write(tmp_path, "c.jsonl", [COMPARISON, NEWS_COMPARISON]), "comparisons")
    out = tmp_path / "out.jsonl"
    assert write_jsonl(out, records) == 2
    assert load(out, "comparisons") == records
    row = to_json(records[0])
    assert row["summaries"][0]["text"] == " first summary" and row["extra"] == {"confidence": 7}


def test_blank_lines_and_bom_are_accepted(tmp_path):
    body = ("\n" + json.dumps(TLDR) + "\n\n   \n" + json.dumps(TLDR | {"id": "t3_2"}) + "\n").encode()
    path = write(tmp_path, "bom.jsonl", [], raw=b"\xef\xbb\xbf" + json.dumps(TLDR).encode() + body)
    assert len(load(path, "tldr")) == 3


@pytest.mark.parametrize(
    ("fmt", "record", "field", "message"),
    [
        ("tldr", {k: v for k, v in TLDR.items() if k != "post"}, "post", "missing"),
        ("tldr", TLDR | {"summary": 3}, "summary", "expected a string, got int"),
        ("tldr", TLDR | {"post": "   "}, "post", "is empty"),
        ("comparisons", COMPARISON | {"choice": 2}, "choice", "must be 0 or 1"),
        ("comparisons", COMPARISON | {"choice": True}, "choice", "must be 0 or 1"),
        ("comparisons", COMPARISON | {"split": "test"}, "split", "unknown split 'test'"),
        ("comparisons", COMPARISON | {"summaries": COMPARISON["summaries"][:1]}, "summaries", "exactly 2"),
        (
            "comparisons",
            COMPARISON | {"summaries": [{"text": "", "policy": "a"}, {"text": " b", "policy": "ref"}]},
            "summaries[0].text",
            "is empty",
        ),
        ("comparisons", COMPARISON | {"extra": {"confidence": 12}}, "extra.confidence", "outside 1-9"),
        ("comparisons", COMPARISON | {"info": {"id": "x", "title": "t"}}, "info", "missing both"),
        ("axis", AXIS | {"summary": AXIS["summary"] | {"axes": {"overall": 8}}}, "summary.axes.overall", "outside 1-7"),
        ("axis", AXIS | {"summary": AXIS["summary"] | {"axes": {"overall": 0}}}, "summary.axes.overall", "outside 1-7"),
        (
            "axis",
            AXIS | {"summary": AXIS["summary"] | {"axes": {"accuracy": 4.5}}},
            "summary.axes.accuracy",
            "expected an integer 1-7",
        ),
        ("axis", AXIS | {"split": "bogus"}, "split", "unknown split"),
        ("cnndm", CNNDM | {"highlights": None}, "highlights", "is null"),
        ("cnndm", [1, 2], "record", "expected a JSON object, got list"),
    ],
)
def test_each_kind_of_problem_names_file_line_and_field(tmp_path, fmt, record, field, message):
    good = {"tldr": TLDR, "comparisons": COMPARISON, "axis": AXIS, "cnndm": CNNDM}[fmt]
    path = write(tmp_path, "bad.jsonl", [good, record])
    result = validate_file(path, fmt)
    assert len(result.records) == 1 and len(result.problems) == 1
    text = str(result.problems[0])
    assert text.startswith(f"{path}:2: {field}: "), text
    assert message in text
    with pytest.raises(DataError, match=f"{path}:2: "):
        load(path, fmt)


def test_every_problem_is_listed_including_bad_json_and_bad_utf8(tmp_path):
    raw = (json.dumps(TLDR) + "\n{not json\n" + json.dumps(TLDR | {"title": 5}) + "\n").encode() + b"\xff\xfe bad\n"
    path = write(tmp_path, "many.jsonl", [], raw=raw)
    problems = [str(p) for p in validate_file(path, "tldr").problems]
    assert problems[0].startswith(f"{path}:2: line: bad JSON")
    assert problems[1] == f"{path}:3: title: expected a string, got int"
    assert problems[2].startswith(f"{path}:4: line: invalid UTF-8")
    assert len(problems) == 3


def test_validate_cli_exit_codes_and_output(tmp_path, capsys):
    good = write(tmp_path, "good.jsonl", [COMPARISON, NEWS_COMPARISON])
    assert main(["data", "validate", str(good), "--format", "comparisons"]) == 0
    assert "2 comparisons records, no problems" in capsys.readouterr().out

    bad = write(tmp_path, "bad.jsonl", [COMPARISON, COMPARISON | {"choice": 5}, COMPARISON | {"worker": None}])
    assert main(["data", "validate", str(bad), "--format", "comparisons"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{bad}:2: choice: must be 0 or 1 (index of the preferred summary), got 5",
        f"{bad}:3: worker: missing",
    ]

    assert main(["data", "validate", str(tmp_path / "nope.jsonl"), "--format", "tldr"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_sniff_format(tmp_path):
    assert sniff_format(write(tmp_path, "a.jsonl", [AXIS])) == "axis"
    assert sniff_format(write(tmp_path, "c.jsonl", [COMPARISON])) == "comparisons"
    assert sniff_format(write(tmp_path, "n.jsonl", [CNNDM])) == "cnndm"
    assert sniff_format(write(tmp_path, "x.jsonl", [{"hello": 1}])) is None


def test_write_jsonl_is_atomic_on_failure(tmp_path, monkeypatch):
    from training import data

    path = tmp_path / "keep.jsonl"
    write_jsonl(path, [TLDR])

    def crash(src, dst):  # the process dies between writing the temp file and renaming it
        raise OSError("disk full")

    monkeypatch.setattr(data.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_jsonl(path, [TLDR | {"id": "t3_new"}, TLDR])
    assert [r.id for r in load(path, "tldr")] == ["t3_1abc"]  # the old file survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]  # and no temp file is left behind


def test_written_files_get_normal_permissions(tmp_path):
    import os

    mask = os.umask(0)
    os.umask(mask)
    path = tmp_path / "perm.jsonl"
    write_jsonl(path, [TLDR])
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() would make it, not mkstemp's 0600


def test_hub_loader_parses_rows_through_the_same_validators(monkeypatch):
    """The hub path (network only in real use) with a stand-in `datasets` module: rows go through the parsers."""
    import sys
    import types

    from training import data

    calls = []

    def load_dataset(hub_id, config, split):
        calls.append((hub_id, config, split))
        return [COMPARISON, NEWS_COMPARISON, COMPARISON | {"choice": 3}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert len(data.load_hub("comparisons", "train", limit=2)) == 2
    assert calls[0] == ("openai/summarize_from_feedback", "comparisons", "train")
    with pytest.raises(DataError, match=r"openai/summarize_from_feedback\[train\]:2: choice"):
        data.load_hub("comparisons", "train")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(RuntimeError, match="export the dataset to JSONL elsewhere"):
        data.load_hub("tldr", "train")
