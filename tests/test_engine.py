"""The inference engine (service/engine.py): bundle verification, provider choice, input validation and padding edge
cases, sampling, best-of-N and the reward preference — against hand-computed values or independent re-computation."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.export_fixtures import ITEMS, MAX_QUERY, MAX_RESPONSE, SUMMARIES, bundles, export_ckpts  # noqa: F401
from training.manifest import BundleError

REPO = Path(__file__).resolve().parents[1]


def engine(bundle):
    from service.engine import load_engine

    return load_engine(bundle, threads=1, provider="cpu")


@pytest.fixture(scope="module")
def policy(bundles):  # noqa: F811
    return engine(bundles["llama"])


@pytest.fixture(scope="module")
def reward(bundles):  # noqa: F811
    return engine(bundles["rm"])


# --------------------------------------------------------------------------------------------------- imports


def test_importing_the_engine_imports_no_torch():
    heavy = "('torch', 'transformers', 'optimum')"
    code = f"import sys, service.engine; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert res.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------------------- manifest


def test_verify_catches_a_corrupted_file_and_names_it(tmp_path, bundles):  # noqa: F811
    from training.manifest import verify_bundle

    b = shutil.copytree(bundles["rm"], tmp_path / "rm")
    assert verify_bundle(b).kind == "reward"
    tok = b / "tokenizer.json"
    data = bytearray(tok.read_bytes())
    data[100] ^= 1  # one flipped bit
    tok.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"tokenizer\.json is corrupted .*re-export"):
        engine(b)


def test_verify_catches_a_missing_model_and_names_it(tmp_path, bundles):  # noqa: F811
    b = shutil.copytree(bundles["llama"], tmp_path / "p")
    (b / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model\.onnx is missing.*re-export"):
        engine(b)


def test_manifest_problems_are_clear_errors(tmp_path, bundles):  # noqa: F811
    from training.manifest import read_manifest

    with pytest.raises(BundleError, match="does not exist"):
        read_manifest(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        read_manifest(tmp_path / "empty")
    b = shutil.copytree(bundles["rm"], tmp_path / "rm")
    good = json.loads((b / "manifest.json").read_text())
    cases = [
        ("{not json", "not valid JSON"),
        (json.dumps(good | {"format_version": 99}), "newer than this prefsum understands"),
        (json.dumps(good | {"kind": "critic"}), "kind must be one of"),
        (json.dumps(good | {"pad_id": good["eos_id"]}), "must differ from EOS"),
        (json.dumps({k: v for k, v in good.items() if k != "eos_id"}), "missing field.*eos_id"),
        (json.dumps(good | {"colour": "blue"}), "unknown field.*colour"),
    ]
    for text, message in cases:
        (b / "manifest.json").write_text(text)
        with pytest.raises(BundleError, match=message):
            read_manifest(b)


def test_manifest_round_trips(tmp_path):
    from training.manifest import Manifest, read_manifest, write_manifest

    m = Manifest("reward", "rm", "tldr", 512, 48, 0, 1, -2.5, {"stage": "rm"}, {"model.onnx": "ab"}, {"opset": 18})
    write_manifest(tmp_path, m)
    assert read_manifest(tmp_path) == m
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left behind


def test_load_bundles_finds_every_bundle_and_skips_other_folders(tmp_path, bundles):  # noqa: F811
    from service.engine import PolicyEngine, RewardEngine, load_bundles

    for name in ("llama", "rm"):
        shutil.copytree(bundles[name], tmp_path / name)
    (tmp_path / "notes").mkdir()  # no manifest: not a bundle
    shutil.copytree(bundles["rm"], tmp_path / ".rm.old")  # hidden: a half-swapped export
    engines = load_bundles(tmp_path, threads=1, provider="cpu")
    assert sorted(engines) == ["llama", "rm"]
    assert isinstance(engines["llama"], PolicyEngine) and isinstance(engines["rm"], RewardEngine)
    assert engines["rm"].name == "rm" and engines["rm"].manifest.kind == "reward"
    with pytest.raises(BundleError, match="does not exist"):
        load_bundles(tmp_path / "missing")


# --------------------------------------------------------------------------------------------------- providers


def test_provider_choice():
    from service._ort import CPU, CUDA, ProviderError, pick_providers

    both = [CUDA, CPU]
    assert pick_providers("auto", both, cuda_devices=1) == [CUDA, CPU]
    assert pick_providers("auto", both, cuda_devices=0) == [CPU]  # onnxruntime-gpu on a machine without a GPU
    assert pick_providers("auto", [CPU], cuda_devices=2) == [CPU]  # a CPU-only onnxruntime build
    assert pick_providers("cpu", both, cuda_devices=1) == [CPU]
    assert pick_providers("cuda", both, cuda_devices=1) == [CUDA, CPU]
    with pytest.raises(ProviderError, match="no CUDA device"):
        pick_providers("cuda", both, cuda_devices=0)
    with pytest.raises(ProviderError, match="no CUDAExecutionProvider"):
        pick_providers("cuda", [CPU], cuda_devices=1)
    with pytest.raises(ValueError, match="provider must be one of"):
        pick_providers("tpu", both, cuda_devices=1)


def test_auto_provider_on_this_machine_is_quiet(bundles, capfd):  # noqa: F811
    from service._ort import CPU, CUDA, ProviderError, cuda_device_count
    from service.engine import load_engine

    eng = load_engine(bundles["rm"], threads=1)  # provider "auto"
    if cuda_device_count() == 0:
        assert eng.provider == CPU
        with pytest.raises(ProviderError):
            load_engine(bundles["rm"], threads=1, provider="cuda")
    else:
        assert eng.provider in (CPU, CUDA)
    assert "error" not in capfd.readouterr().err.lower()  # no CUDA-library spam when falling back


def test_threads_setting_is_validated(bundles):  # noqa: F811
    from service.engine import load_engine

    with pytest.raises(ValueError, match="threads must be >= 1"):
        load_engine(bundles["rm"], threads=0)


# --------------------------------------------------------------------------------------------------- inputs


def test_bad_items_name_the_problem(policy, reward):
    from service.engine import EngineInputError

    cases = [
        ([], "items is empty"),
        ({"subreddit": "a", "title": "b", "post": "c"}, "items must be a list"),
        ([{"subreddit": "a", "title": "b"}], r"items\[0\] is missing field\(s\) post"),
        ([ITEMS[0], {"title": "b"}], r"items\[1\] is missing field\(s\) subreddit, post"),
        ([{"subreddit": "a", "title": "b", "post": 3}], r"items\[0\]\.post must be a string"),
        ([{"subreddit": "a", "title": "b", "post": "  "}], r"items\[0\]\.post is empty"),
        ([{"text": ""}], r"items\[0\]\.text is empty"),
        (["a post"], r"items\[0\] must be an object"),
        ([{"subreddit": "a", "title": "word " * 200, "post": "c"}], r"items\[0\]\.title: .*over the query budget"),
    ]
    for items, message in cases:
        with pytest.raises(EngineInputError, match=message):
            policy.summarize(items)
    with pytest.raises(EngineInputError, match="pairs is empty"):
        reward.score([])
    with pytest.raises(EngineInputError, match=r"pairs\[0\] must be \(item, summary\)"):
        reward.score([ITEMS[0]])
    with pytest.raises(EngineInputError, match=r"items\[0\] is missing"):
        reward.score([({"title": "x"}, " s")])


def test_bad_settings_name_the_setting(policy):
    from service.engine import EngineInputError

    for kwargs, message in [
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer in \\[1, 16\\]"),
        ({"max_new_tokens": MAX_RESPONSE + 1}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature must be"),
        ({"top_p": 0.0}, "top_p must be in"),
        ({"top_p": 1.5}, "top_p must be in"),
        ({"n": 0}, "n must be an integer"),
    ]:
        with pytest.raises(EngineInputError, match=message):
            policy.summarize(ITEMS[:1], **kwargs)


def test_long_posts_are_cut_exactly_as_the_task_rules_say(policy):
    """The engine's fast pre-cut (no tokenizing while certainly over budget) must give training.task's query."""
    from training.task import tldr_query

    tok = policy.tokenizer
    posts = [
        "x" * 5000,  # one token per few characters, no newline: cut one character at a time
        "word " * 3000,  # spaces: every cut leaves a stripped prefix
        "é€ " * 2000,  # multi-byte characters: the byte bound must not split a character
        ("line with some words\n" * 400) + "tail without newline " * 50,
        "short post",
    ]
    for post in posts:
        want = tldr_query("pets", "A title", post, max_tokens=MAX_QUERY, count_tokens=tok.count).text
        got = policy.encode_queries([{"subreddit": "pets", "title": "A title", "post": post}])[0]
        assert got == tok.encode(want)
        assert len(got) <= MAX_QUERY


def test_completions_are_public_format_and_counted(policy):
    from training.task import clean_summary, response_tokens

    out = policy.summarize(ITEMS, max_new_tokens=5)
    queries = policy.encode_queries(ITEMS)
    raw = policy.generate_ids(queries, 5)
    for (comp,), (toks, finish) in zip(out, raw, strict=True):
        assert comp.tokens == len(toks) <= 5
        assert comp.finish_reason == finish
        assert comp.text == clean_summary(policy.tokenizer.decode(toks))
        assert comp.text == "" or (comp.text.startswith(" ") and not comp.text.startswith("  "))
        assert comp.score is None
        assert response_tokens(toks, policy.manifest.eos_id, policy.manifest.pad_id) == toks
    assert {c[0].finish_reason for c in out} == {"length", "eos"}  # a short budget ends some rows, EOS others


def test_rows_stop_at_their_own_eos(policy):
    """After a row's EOS the engine records nothing more for it, while longer rows continue."""
    queries = policy.encode_queries(ITEMS)
    raw = policy.generate_ids(queries, MAX_RESPONSE)
    eos_rows = [i for i, (_, f) in enumerate(raw) if f == "eos"]
    long_rows = [i for i, (_, f) in enumerate(raw) if f == "length"]
    assert eos_rows and long_rows
    for i in eos_rows:
        assert policy.manifest.eos_id not in raw[i][0] and len(raw[i][0]) < MAX_RESPONSE
    for i in long_rows:
        assert len(raw[i][0]) == MAX_RESPONSE


# --------------------------------------------------------------------------------------------------- sampling


def test_nucleus_sampling_matches_hand_computed_distribution():
    from service.engine import _sample

    p = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(p)[None].repeat(20000, axis=0)
    rng = np.random.default_rng(0)
    # top_p 0.7: {0.5, 0.3} reach it (0.5 alone does not) -> renormalised 0.625 / 0.375, never tokens 2 or 3
    draws = _sample(logits, 1.0, 0.7, rng)
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert freq[2] == freq[3] == 0
    assert abs(freq[0] - 0.625) < 0.015
    # top_p 1: the distribution itself
    freq = np.bincount(_sample(logits, 1.0, 1.0, rng), minlength=4) / len(draws)
    np.testing.assert_allclose(freq, p, atol=0.015)
    # temperature 2 flattens: p^(1/2) renormalised
    t2 = np.sqrt(p) / np.sqrt(p).sum()
    freq = np.bincount(_sample(logits, 2.0, 1.0, rng), minlength=4) / len(draws)
    np.testing.assert_allclose(freq, t2, atol=0.015)
    # temperature 0: argmax
    assert _sample(np.array([[0.1, 3.0, 2.9]]), 0.0, 0.5, rng).tolist() == [1]


def test_sampling_is_seeded_and_greedy_n_repeats(policy):
    a = policy.summarize(ITEMS[:3], temperature=1.0, n=3, seed=7)
    b = policy.summarize(ITEMS[:3], temperature=1.0, n=3, seed=7)
    assert a == b and [len(r) for r in a] == [3, 3, 3]
    c = policy.summarize(ITEMS[:3], temperature=1.0, n=3, seed=8)
    assert a != c
    greedy = policy.summarize(ITEMS[:2], n=2)
    assert greedy[0][0] == greedy[0][1] and greedy[1][0] == greedy[1][1]
    assert greedy[0][0] == policy.summarize(ITEMS[:1])[0][0]


# --------------------------------------------------------------------------------------------------- reward


def test_preference_is_the_sigmoid_of_the_reward_difference(reward):
    item = ITEMS[2]
    ra, rb = reward.score([(item, SUMMARIES[2]), (item, " something else entirely")])
    assert ra != rb
    assert reward.preference(item, SUMMARIES[2], " something else entirely") == pytest.approx(
        1 / (1 + math.exp(rb - ra)), abs=1e-12
    )


def test_score_reads_the_reward_at_each_summarys_eos(reward):
    """Batched scoring of very different lengths equals scoring each pair alone (right padding is invisible)."""
    pairs = list(zip(ITEMS, SUMMARIES, strict=True))
    together = reward.score(pairs)
    alone = [reward.score([p])[0] for p in pairs]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    long_summary = " word" * 200  # cut to the response budget (with its EOS)
    ids = reward.tokenizer.encode(long_summary)
    q = reward.encode_queries([ITEMS[1]])[0]
    cut = reward.score_ids([q + ids[: MAX_RESPONSE - 1] + [reward.manifest.eos_id]])[0]
    assert reward.score([(ITEMS[1], long_summary)])[0] == pytest.approx(cut, abs=1e-6)


def test_best_of_n_keeps_the_highest_scoring_sample(policy, reward):
    from service.engine import best_of_n

    kept = best_of_n(policy, reward, ITEMS[:4], n=4, temperature=1.0, seed=3)
    cands = policy._summarize_ids(ITEMS[:4], max_new_tokens=None, temperature=1.0, top_p=1.0, n=4, seed=3)
    queries = reward.encode_queries(ITEMS[:4])
    eos = reward.manifest.eos_id
    for q, row, k in zip(queries, cands, kept, strict=True):
        scores = reward.score_ids([q + toks + [eos] for _, toks in row])
        best = int(np.argmax(scores))
        assert k.score == pytest.approx(scores[best], abs=1e-9)
        assert k == dataclasses.replace(row[best][0], score=k.score)
        assert k.score == max(scores)


def test_engines_are_plain_python_objects_with_name_and_manifest(policy, reward):
    assert policy.name == "llama" and policy.manifest.kind == "policy"
    assert reward.name == "rm" and reward.manifest.kind == "reward"
    assert "llama" in repr(policy)


@pytest.mark.skipif(os.environ.get("PREFSUM_OPTIN") != "1", reason="needs PREFSUM_OPTIN=1 and a CUDA device")
@pytest.mark.optin
def test_cuda_provider_gives_the_cpu_tokens(bundles):  # noqa: F811
    from service._ort import cuda_device_count
    from service.engine import load_engine

    if cuda_device_count() == 0:
        pytest.skip("no CUDA device")
    gpu = load_engine(bundles["llama"], provider="cuda")
    assert gpu.provider == "CUDAExecutionProvider"
    assert gpu.summarize(ITEMS) == engine(bundles["llama"]).summarize(ITEMS)
