"""build_report on hand-written judgments: every number against a hand count, the contract's keys, the files."""

import json
import statistics

import pytest

from evals.baselines import lead2_post
from evals.gold import gold_axes, load_frames
from evals.report import ReportInputError, build_report
from training.data import load_tldr

POST = {"id": "t3_1", "post": "My dog barks.", "title": "dog", "subreddit": "pets"}
ARTICLE = {"id": "a1", "article": "Fire in town. Many people left.", "site": "news", "title": None}


def cmp(pid, pol_text, ref_text, policy, choice, worker, *, pol_first=True, extra=None, info=None):
    pol = {"text": pol_text, "policy": policy, "note": None}
    ref = {"text": ref_text, "policy": "ref", "note": None}
    info = dict(info or POST, id=pid)
    return {
        "info": info,
        "summaries": [pol, ref] if pol_first else [ref, pol],
        "choice": choice,
        "worker": worker,
        "batch": "hand",
        "split": "valid2",
        "extra": extra or {"confidence": 5},
    }


def axis(aid, text, policy, overall, accuracy, coverage, coherence, worker="sim:sim-0"):
    return {
        "info": dict(ARTICLE, id=aid),
        "split": "test",
        "summary": {
            "text": text,
            "policy": policy,
            "note": None,
            "axes": {"overall": overall, "accuracy": accuracy, "coverage": coverage, "coherence": coherence},
        },
        "worker": worker,
        "batch": "hand",
    }


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


@pytest.fixture
def hand_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    # Labelers (sim:): policy "long" wins 3 of 4 (pol texts of 3 words), "short" wins 1 of 4 (1 word).
    # Pairs p1 and p2 are judged twice by different labelers: p1 alike, p2 not -> agreement 1/2 over 2 pairs.
    lab = [
        cmp("p1", " one two three", " ref one", "long", 0, "sim:sim-0"),
        cmp("p1", " one two three", " ref one", "long", 0, "sim:sim-1", pol_first=True),
        cmp("p2", " four five six", " ref two", "long", 1, "sim:sim-2", pol_first=False),
        cmp("p2", " four five six", " ref two", "long", 0, "sim:sim-3", pol_first=False),  # chose ref
        cmp("p3", " a", " ref three", "short", 1, "sim:sim-0"),
        cmp("p4", " b", " ref four", "short", 0, "sim:sim-1"),  # chose short
        cmp("p5", " c", " ref five", "short", 1, "sim:sim-2"),
        cmp("p6", " d", " ref six", "short", 1, "sim:sim-3"),
    ]
    # The reward model judged p1, p2 and p3: on p1 it picks the policy (agrees with both labelers), on p2 the policy
    # (agrees with sim-2 only), on p3 the policy (disagrees) -> 3 of 5 labeler judgments.
    rm = [
        cmp("p1", " one two three", " ref one", "long", 1, "rm:rmX", pol_first=False, extra={"judge": "rm:rmX"}),
        cmp("p2", " four five six", " ref two", "long", 0, "rm:rmX", extra={"judge": "rm:rmX"}),
        cmp("p3", " a", " ref three", "short", 0, "rm:rmX", extra={"judge": "rm:rmX"}),
    ]
    write(d / "tldr-sim.jsonl", lab)
    write(d / "tldr-rm.jsonl", rm)
    write(
        d / "news-sim.jsonl",
        [
            axis("a1", " Fire.", "lead3", 5, 6, 4, 7),
            axis("a2", " Fire again.", "lead3", 3, 6, 2, 7),
            axis("a1", " Fire in town.", "ref", 6, 7, 6, 7),
            axis("a2", " Fire in the town.", "ref", 7, 7, 6, 6),
        ],
    )
    (d / "notes.jsonl").write_text('{"hello": 1}\n', encoding="utf-8")  # not a public format: listed, ignored
    return d


def test_report_numbers_equal_hand_counts(hand_dir, tmp_path):
    report = build_report(hand_dir, tmp_path / "out", sweep=None)
    tldr = report["tldr"]
    assert list(tldr) == ["long", "short"]
    assert (tldr["long"]["n"], tldr["long"]["wins"], tldr["long"]["win_rate"]) == (4, 3, 0.75)
    assert (tldr["short"]["n"], tldr["short"]["wins"], tldr["short"]["win_rate"]) == (4, 1, 0.25)
    assert tldr["long"]["mean_tokens"] == 3.0 and tldr["short"]["mean_tokens"] == 1.0
    assert tldr["long"]["mean_chars"] == statistics.fmean([len("one two three"), len("four five six")])
    assert report["meta"]["judges"]["tldr"] == "sim"  # labelers before the reward model
    assert report["meta"]["by_judge"]["tldr"]["rm"]["long"] == {"n": 2, "win_rate": 1.0, "win_rate_ci": [0.3424, 1.0]}
    assert report["agreement"] == {"labelers": 0.5, "rm_vs_labelers": 0.6, "labelers_n": 2, "rm_vs_labelers_n": 5}
    news = report["news"]
    assert list(news) == ["lead3", "ref"]
    assert news["lead3"]["axes"] == {"overall": 4.0, "accuracy": 6.0, "coverage": 3.0, "coherence": 7.0}
    assert news["ref"]["axes"] == {"overall": 6.5, "accuracy": 7.0, "coverage": 6.0, "coherence": 6.5}
    assert news["ref"]["n"] == 2
    assert "notes.jsonl" in report["meta"]["files"] and not report["meta"]["files"]["notes.jsonl"]["used"]
    assert "characters" in report["meta"]["length_unit"]
    assert "whitespace" in report["meta"]["mean_tokens"]


def test_report_json_contract_and_files(hand_dir, tmp_path):
    out = tmp_path / "out"
    sweep = tmp_path / "sweep.json"
    sweep.write_text(
        json.dumps(
            [
                {"kl_coef": 0.01, "kl": 20.0, "rm_score": 3.0, "gold_win_rate": 0.3},
                {"kl_coef": 0.1, "kl": 5.0, "rm_score": 1.0, "gold_win_rate": 0.5},
                {"kl_coef": None, "policy": "sft", "kl": 0.0, "rm_score": 0.2, "gold_win_rate": 0.4},
            ]
        ),
        encoding="utf-8",
    )
    report = build_report(hand_dir, out, sweep=sweep)
    on_disk = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert on_disk == report
    # sorted by KL, the SFT point (kl_coef null) first; extra keys such as "policy" are not carried
    assert [r["kl_coef"] for r in report["overoptimization"]] == [None, 0.1, 0.01]
    assert report["overoptimization"][0] == {"kl_coef": None, "kl": 0.0, "rm_score": 0.2, "gold_win_rate": 0.4}
    assert "| SFT | 0.000 | 0.200 | 0.400 |" in (out / "report.md").read_text(encoding="utf-8")
    assert (out / "fig_overoptimization.png").read_bytes()[:4] == b"\x89PNG"
    for entry in report["tldr"].values():
        assert {"n", "win_rate", "win_rate_ci", "lc_win_rate", "lc_ci", "mean_tokens"} <= set(entry)
        assert "gold" not in entry  # no frames for hand-made posts
    for entry in report["news"].values():
        assert {"n", "axes", "lc_overall"} <= set(entry)
        assert set(entry["axes"]) == {"overall", "accuracy", "coverage", "coherence"}
    assert {"labelers", "rm_vs_labelers"} <= set(report["agreement"])
    assert [r["kl"] for r in report["overoptimization"]] == [0.0, 5.0, 20.0]  # sorted by KL
    assert set(report["overoptimization"][0]) == {"kl_coef", "kl", "rm_score", "gold_win_rate"}
    figures = report["meta"]["figures"]
    assert set(figures) == {"preference", "raw_vs_lc", "likert", "overoptimization"}
    html = (out / "report.html").read_text(encoding="utf-8")
    for name in figures.values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"src='{name}'" in html
        assert f"({name})" in (out / "report.md").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "characters" in html
    assert not list(out.glob(".*"))  # no temp files left behind


def test_comparisons_without_a_reference_side_fail_naming_the_file(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rec = cmp("p1", " a", " b", "sft", 0, "w")
    rec["summaries"][1]["policy"] = "pretrained"
    write(d / "pairs.jsonl", [rec])
    with pytest.raises(ReportInputError, match=r"pairs\.jsonl: none of its 1 comparisons has a reference side"):
        build_report(d, tmp_path / "out")


def test_an_empty_or_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(ReportInputError, match="no such folder"):
        build_report(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="prefsum eval run"):
        build_report(tmp_path / "empty", tmp_path / "out")


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ([], "non-empty JSON list"),
        ([{"kl_coef": 0.1, "kl": 1.0, "rm_score": 1.0}], "entry 0: 'gold_win_rate' must be a finite number"),
        ([{"kl_coef": 0.1, "kl": "x", "rm_score": 1.0, "gold_win_rate": 0.5}], "'kl' must be a finite number"),
    ],
)
def test_bad_sweeps_are_refused_before_any_work(hand_dir, tmp_path, sweep, message):
    with pytest.raises(ReportInputError, match=message):
        build_report(hand_dir, tmp_path / "out", sweep=sweep)
    assert not (tmp_path / "out").exists()


def test_gold_axes_from_the_world_frames(tiny_world, tmp_path):
    posts = load_tldr(tiny_world / "tldr" / "test.jsonl")[:6]
    frames = load_frames(tiny_world / "frames.jsonl")
    d = tmp_path / "in"
    d.mkdir()
    records = []
    for i, p in enumerate(posts):
        info = {"id": p.id, "post": p.post, "title": p.title, "subreddit": p.subreddit}
        ref = " " + " ".join(p.summary.split())
        records.append(cmp(p.id, lead2_post(p), ref, "lead2", i % 2, "sim:sim-0", info=info))
    write(d / "tldr-sim.jsonl", records)
    report = build_report(d, tmp_path / "out", frames=tiny_world / "frames.jsonl", figures=False)
    expected = [gold_axes(frames[p.id], lead2_post(p)) for p in posts]
    gold = report["tldr"]["lead2"]["gold"]
    recall = statistics.fmean(len(g.stated) / len(frames[p.id].facts) for g, p in zip(expected, posts, strict=True))
    assert gold["fact_recall"] == round(recall, 4)
    assert gold["wrong_value_rate"] == round(statistics.fmean(bool(g.contradicted) for g in expected), 4)
    assert gold["overall"] == round(statistics.fmean(g.overall for g in expected), 4)
    ref_gold = report["meta"]["reference"]["tldr"]["gold"]
    assert ref_gold["overall"] == round(
        statistics.fmean(gold_axes(frames[p.id], " " + " ".join(p.summary.split())).overall for p in posts), 4
    )
    with pytest.raises(ReportInputError, match="--frames"):
        build_report(d, tmp_path / "out2", frames=tmp_path / "missing.jsonl")
