"""ONNX export: bundles reproduce torch (greedy tokens, rewards within 1e-4), int8 is measured against fp32, the
manifest records what the bundle is and where it came from, and `prefsum export` drives it all.

The torch references are the project's own torch paths: training.sampling.generate (HF generate, left padding) and
training.reward.rewards (the RM at the last non-pad token), on queries built by training.sft.encode_query.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.export_fixtures import (  # noqa: F401  (fixtures)
    ITEMS,
    MAX_QUERY,
    MAX_RESPONSE,
    REWARD_BIAS,
    SUMMARIES,
    bundles,
    export_ckpts,
    manifest_json,
)
from training.data import NewsArticle, PostInfo

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def record(item):
    if "text" in item:
        return NewsArticle("n", item["text"], "")
    return PostInfo("p", item["post"], item["title"], item["subreddit"])


def torch_queries(tokenizer, items=ITEMS):
    from training.sft import encode_query

    return [encode_query(record(it), tokenizer, MAX_QUERY) for it in items]


def torch_greedy(ckpt, items=ITEMS, batch_size=len(ITEMS)):
    from transformers import AutoModelForCausalLM

    from training.sampling import generate
    from training.tokenizer import load_tokenizer

    tok = load_tokenizer(ckpt)
    model = AutoModelForCausalLM.from_pretrained(str(ckpt)).eval()
    return generate(model, tok, torch_queries(tok, items), max_new_tokens=MAX_RESPONSE, batch_size=batch_size)


def torch_rewards(ckpt, items=ITEMS, summaries=SUMMARIES):
    """Raw RM outputs minus the bias, for query + summary (cut to the budget) + EOS, as training.reward encodes."""
    from transformers import AutoModelForSequenceClassification

    from training.reward import encode_summary, rewards
    from training.tokenizer import load_tokenizer

    tok = load_tokenizer(ckpt)
    model = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval()
    seqs = [encode_summary(tok, q, s, MAX_RESPONSE) for q, s in zip(torch_queries(tok, items), summaries, strict=True)]
    with torch.no_grad():
        return (rewards(model, seqs, tok.pad_token_id) - REWARD_BIAS).tolist()


def engine(bundle, **kw):
    from service.engine import load_engine

    return load_engine(bundle, threads=1, provider="cpu", **kw)


# --------------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_greedy_tokens_equal_torch_in_one_left_padded_batch(bundles, export_ckpts, arch):  # noqa: F811
    ref = torch_greedy(export_ckpts[arch])
    eng = engine(bundles[arch])
    got = eng.summarize(ITEMS)
    assert [len(row) for row in got] == [1] * len(ITEMS)
    assert [(c[0].text, c[0].tokens, c[0].finish_reason) for c in got] == [
        (g.text, len(g.tokens), g.finish_reason) for g in ref
    ]
    ids = eng.generate_ids(eng.encode_queries(ITEMS), MAX_RESPONSE)
    assert [t for t, _ in ids] == [g.tokens for g in ref]
    if arch == "llama":  # the decisive fixture model ends some rows at EOS and runs others to the budget
        assert {g.finish_reason for g in ref} == {"eos", "length"}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_rows_equal_rows_alone(bundles, export_ckpts, arch):  # noqa: F811
    """Left padding must not change a row (GPT-2's absolute positions make this fail without position ids)."""
    eng = engine(bundles[arch])
    queries = eng.encode_queries(ITEMS)
    assert max(map(len, queries)) - min(map(len, queries)) > 50  # rows of very different lengths
    batched = eng.generate_ids(queries, MAX_RESPONSE)
    alone = [eng.generate_ids([q], MAX_RESPONSE)[0] for q in queries]
    assert batched == alone
    ref_alone = [torch_greedy(export_ckpts[arch], [it], 1)[0].tokens for it in ITEMS[:3]]
    assert [t for t, _ in alone[:3]] == ref_alone


def test_queries_follow_the_task_truncation_rules(bundles, export_ckpts):  # noqa: F811
    from training.tokenizer import load_tokenizer

    eng = engine(bundles["llama"])
    expected = torch_queries(load_tokenizer(export_ckpts["llama"]))
    got = eng.encode_queries(ITEMS)
    assert got == expected
    long_rows = [i for i, it in enumerate(ITEMS) if len(it.get("post", "")) > 1000]  # hundreds of tokens each
    assert len(long_rows) == 2 and all(MAX_QUERY // 2 < len(got[i]) <= MAX_QUERY for i in long_rows)


@pytest.mark.parametrize("name", ["rm", "gpt2_rm"])
def test_rewards_equal_torch_within_1e4(bundles, export_ckpts, name):  # noqa: F811
    ref = torch_rewards(export_ckpts[name])
    got = engine(bundles[name]).score(list(zip(ITEMS, SUMMARIES, strict=True)))
    diff = np.max(np.abs(np.array(got) - np.array(ref)))
    print(f"\n{name}: max |ORT - torch| reward {diff:.2e}")
    assert diff < 1e-4
    assert np.std(ref) > 1e-2  # the rewards differ between pairs, so equality is not a constant matching a constant


@pytest.mark.parametrize("name", ["rm", "gpt2_rm"])
def test_summed_reward_bundle_equals_torch(export_ckpts, tmp_path, name):  # noqa: F811
    """An RM trained with rm.pooling = "sum" exports with a response_mask input; its rewards equal torch's sum over
    the response positions (training.reward), for both architectures."""
    from service.engine import EngineInputError
    from training.export import export_bundle
    from training.reward import encode_summary, rewards
    from training.tokenizer import load_tokenizer

    ckpt = tmp_path / f"{name}_sum"
    shutil.copytree(export_ckpts[name], ckpt)
    meta = json.loads((ckpt / "prefsum.json").read_text(encoding="utf-8"))
    (ckpt / "prefsum.json").write_text(json.dumps(meta | {"reward_pooling": "sum"}), encoding="utf-8")
    tok = load_tokenizer(ckpt)
    queries = torch_queries(tok)
    seqs = [encode_summary(tok, q, s, MAX_RESPONSE) for q, s in zip(queries, SUMMARIES, strict=True)]
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(ckpt)).eval()
    with torch.no_grad():
        raw = rewards(model, seqs, tok.pad_token_id, pooling="sum", starts=[len(q) for q in queries])
        last = rewards(model, seqs, tok.pad_token_id)
    ref = (raw - REWARD_BIAS).numpy()
    assert np.max(np.abs(raw.numpy() - last.numpy())) > 1e-2  # the two poolings differ: this test can tell them apart
    eng = engine(export_bundle(ckpt, tmp_path / "bundles"))
    assert "response_mask" in eng._inputs and eng.manifest.export["reward_pooling"] == "sum"
    got = np.array(eng.score(list(zip(ITEMS, SUMMARIES, strict=True))))
    np.testing.assert_allclose(got, ref, atol=1e-4)
    np.testing.assert_allclose(eng.score_ids(seqs, [len(q) for q in queries]), ref, atol=1e-4)
    with pytest.raises(EngineInputError, match="query length"):
        eng.score_ids(seqs)
    # int8 quantizes the backbone's MatMuls; the summed head stays a float sum over the response mask
    int8 = engine(export_bundle(ckpt, tmp_path / "bundles", name="int8", quantize="int8"))
    assert "response_mask" in int8._inputs
    assert np.isfinite(int8.score(list(zip(ITEMS, SUMMARIES, strict=True)))).all()


def test_reward_graph_subtracts_the_bias(bundles):  # noqa: F811
    """The graph's `reward` output is its raw score minus the manifest's bias (references centred at 0)."""
    import onnxruntime as ort

    eng = engine(bundles["rm"])
    seqs = [[5, 6, 7, eng.manifest.eos_id], [9, 10, eng.manifest.eos_id]]
    ids = np.full((2, 4), eng.manifest.pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)], mask[i, : len(s)] = s, 1
    sess = ort.InferenceSession(str(bundles["rm"] / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, reward = sess.run(["logits", "reward"], {"input_ids": ids, "attention_mask": mask})
    assert eng.manifest.reward_bias == REWARD_BIAS
    np.testing.assert_allclose(reward, logits[:, 0] - REWARD_BIAS, atol=1e-6)
    np.testing.assert_allclose(eng.score_ids(seqs), reward, atol=1e-6)


# --------------------------------------------------------------------------------------------------- int8


def test_int8_is_quantized_and_its_agreement_is_measured(bundles, export_ckpts):  # noqa: F811
    """int8 changes numbers (so it is really quantized); greedy agreement and reward deltas are printed, not hidden."""
    import onnx

    for name in ("llama-int8", "rm-int8"):
        ops = {n.op_type for n in onnx.load(str(bundles[name] / "model.onnx")).graph.node}
        assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}, name
        q = manifest_json(bundles[name])["export"]["quantization"]
        assert q["quantized"] and manifest_json(bundles[name])["export"]["quantize"] == "int8"

    fp32 = engine(bundles["llama"]).summarize(ITEMS)
    int8 = engine(bundles["llama-int8"]).summarize(ITEMS)
    agree = np.mean([a[0].text == b[0].text for a, b in zip(fp32, int8, strict=True)])
    pairs = list(zip(ITEMS, SUMMARIES, strict=True))
    r32 = np.array(engine(bundles["rm"]).score(pairs))
    r8 = np.array(engine(bundles["rm-int8"]).score(pairs))
    delta = np.abs(r8 - r32)
    print(
        f"\nint8 vs fp32: greedy agreement {agree:.2f} ({len(ITEMS)} queries); reward |delta| max {delta.max():.4f} "
        f"mean {delta.mean():.4f} (reward std {r32.std():.3f})"
    )
    assert delta.max() > 0  # really a different graph
    assert np.corrcoef(r32, r8)[0, 1] > 0.9  # quantization noise, not a broken graph
    assert delta.max() < 0.5 * (r32.max() - r32.min())


# --------------------------------------------------------------------------------------------------- manifest


def test_manifest_records_kind_budgets_provenance_and_hashes(bundles, export_ckpts):  # noqa: F811
    from training.manifest import verify_bundle

    for name, kind, ckpt in (("llama", "policy", "llama"), ("rm", "reward", "rm")):
        b = bundles[name]
        m = verify_bundle(b)
        assert (m.kind, m.name, m.task) == (kind, name, "tldr")
        assert (m.max_query_tokens, m.max_response_tokens) == (MAX_QUERY, MAX_RESPONSE)
        assert (m.eos_id, m.pad_id) == (0, 1)  # the tokenizer's special tokens, in training.tokenizer's order
        assert m.reward_bias == (REWARD_BIAS if kind == "reward" else 0.0)
        assert m.source["stage"] == ("rm" if kind == "reward" else "sft")
        meta = export_ckpts[ckpt] / "prefsum.json"
        assert m.source["prefsum_sha256"] == hashlib.sha256(meta.read_bytes()).hexdigest()
        assert Path(m.source["checkpoint"]) == export_ckpts[ckpt].resolve()
        on_disk = sorted(p.name for p in b.iterdir() if p.name != "manifest.json")
        assert sorted(m.files) == on_disk
        assert {"model.onnx", "tokenizer.json"} <= set(m.files)
        for rel, digest in m.files.items():
            assert hashlib.sha256((b / rel).read_bytes()).hexdigest() == digest
        assert m.export["opset"] >= 17 and m.export["quantize"] is None and m.export["fp16"] is False
        assert "optimum" in m.export["versions"]
    assert manifest_json(bundles["llama"])["export"]["logits"] == "last"


def test_export_replaces_an_existing_bundle_and_leaves_no_temp_folders(tmp_path, export_ckpts):  # noqa: F811
    from training.export import export_bundle

    first = export_bundle(export_ckpts["rm"], tmp_path, name="x")
    (first / "stale.txt").write_text("from an older export")
    second = export_bundle(export_ckpts["rm"], tmp_path, name="x")
    assert second == tmp_path / "x" and not (second / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_export_refuses_bad_requests_clearly(tmp_path, export_ckpts):  # noqa: F811
    from training.export import ExportError, export_bundle

    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_bundle(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ExportError, match="quantize must be one of"):
        export_bundle(export_ckpts["llama"], tmp_path / "out", quantize="int4")
    with pytest.raises(ExportError, match="not both"):
        export_bundle(export_ckpts["llama"], tmp_path / "out", quantize="int8", fp16=True)
    with pytest.raises(ExportError, match="exceed the model's 256 positions"):
        export_bundle(export_ckpts["llama"], tmp_path / "out", max_query_tokens=250)
    with pytest.raises(ExportError, match="plain folder name"):
        export_bundle(export_ckpts["llama"], tmp_path / "out", name="a/b")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_fp16_export_halves_the_weights(tmp_path, export_ckpts):  # noqa: F811
    import onnx

    from training.export import export_bundle

    b = export_bundle(export_ckpts["llama"], tmp_path, name="half", fp16=True)
    m = manifest_json(b)
    assert m["export"]["fp16"] is True
    g = onnx.load(str(b / "model.onnx")).graph
    big = [t for t in g.initializer if np.prod(t.dims) >= 1024]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    # inputs and outputs stay float32 so one engine code path serves both precisions
    assert {i.type.tensor_type.elem_type for i in g.input if i.name.startswith("past")} == {onnx.TensorProto.FLOAT}
    # meant for CUDA, but ONNX Runtime's CPU provider runs it too: agreement with fp32 printed, rewards not needed
    half = engine(b).summarize(ITEMS)
    full = engine(export_bundle(export_ckpts["llama"], tmp_path, name="full")).summarize(ITEMS)
    agree = np.mean([a[0].text == c[0].text for a, c in zip(half, full, strict=True)])
    print(f"\nfp16 vs fp32 greedy agreement on CPU: {agree:.2f}")
    assert agree >= 0.5


# --------------------------------------------------------------------------------------------------- fresh process


def test_bundle_runs_in_a_fresh_process_without_torch_or_the_checkpoint(tmp_path, bundles, export_ckpts):  # noqa: F811
    """Copy the bundles away, hide the checkpoints, and run the engine in a new interpreter: same summaries and
    rewards as torch, and torch never imported."""
    ref_texts = [g.text for g in torch_greedy(export_ckpts["llama"])]
    ref_rewards = torch_rewards(export_ckpts["rm"])
    root = tmp_path / "bundles"
    for name in ("llama", "rm"):
        shutil.copytree(bundles[name], root / name)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in ("llama", "rm"):
        shutil.copytree(export_ckpts[name], hidden / name)
    script = f"""
import json, sys
from service.engine import load_bundles
engines = load_bundles({str(root)!r}, threads=1, provider="cpu")
items = json.loads({json.dumps(json.dumps(ITEMS))})
summaries = json.loads({json.dumps(json.dumps(SUMMARIES))})
out = {{
    "texts": [c[0].text for c in engines["llama"].summarize(items)],
    "rewards": engines["rm"].score(list(zip(items, summaries))),
    "kinds": {{k: v.manifest.kind for k, v in engines.items()}},
    "torch": "torch" in sys.modules,
}}
print(json.dumps(out))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", script]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, check=False)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["torch"] is False
    assert out["kinds"] == {"llama": "policy", "rm": "reward"}
    assert out["texts"] == ref_texts
    assert np.max(np.abs(np.array(out["rewards"]) - np.array(ref_rewards))) < 1e-4


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_export_writes_a_loadable_bundle(tmp_path, export_ckpts):  # noqa: F811
    from prefsum.cli import main
    from training.manifest import verify_bundle

    rc = main(["export", "--checkpoint", str(export_ckpts["rm"]), "--out", str(tmp_path), "--name", "judge"])
    assert rc == 0
    m = verify_bundle(tmp_path / "judge")
    assert (m.kind, m.name, m.reward_bias) == ("reward", "judge", REWARD_BIAS)


def test_cli_export_bad_checkpoint_is_a_one_line_error(tmp_path, capsys):
    from prefsum.cli import main

    rc = main(["export", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "b")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "missing" in err and "does not exist" in err and "Traceback" not in err
