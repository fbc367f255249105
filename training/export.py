"""Export a checkpoint to an ONNX bundle: the only form in which the service and the evals run models.

1. read the checkpoint's prefsum.json: stage "rm" -> a reward bundle, anything else -> a policy bundle
2. export with optimum: the policy as ``text-generation-with-past`` (one merged decoder: an empty past for the prompt,
   then one token at a time with past key values), the reward model as ``text-classification`` (its score at the last
   non-pad token, i.e. the response's EOS when sequences are right-padded; an RM trained with rm.pooling = "sum"
   gets an input ``response_mask`` and sums the head over those positions instead)
3. edit the graph: the policy computes logits for the last position only (a prompt of T tokens would otherwise
   project all T hidden states onto the vocabulary, most of the prompt's cost at tiny size); the reward graph gets a
   ``reward`` output = score - reward_bias, so references score 0 on average without the caller knowing the bias
4. optionally: dynamic int8 weights (onnxruntime.quantization, per output channel) or fp16 (for CUDA)
5. copy the tokenizer files, hash every file, write manifest.json; the bundle folder appears atomically

The bundle folder is ``out_dir / name`` (name defaults to the checkpoint folder's name), so ``out_dir`` collects the
bundles of a run (``OUT/bundles/<name>/``) and ``service.engine.load_bundles(out_dir)`` loads them all.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from training.checkpoint import META_FILE, make_temp_dir, read_meta, sha256_file, swap_in
from training.manifest import MODEL_FILE, RESPONSE_MASK_INPUT, Manifest, hash_files, write_manifest
from training.reward import pooling_of
from training.task import DEFAULT_MAX_QUERY_TOKENS, DEFAULT_MAX_RESPONSE_TOKENS

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
QUANTIZE_CHOICES = ("int8",)
DEFAULT_OPSET = 18
REWARD_OUTPUT = "reward"


class ExportError(ValueError):
    """The checkpoint cannot be exported as asked; the message says why and what to do."""


def _budgets(meta: dict[str, Any]) -> tuple[int, int]:
    """Query/response budgets recorded in the checkpoint's config (any stage table that has them), else the paper's."""
    q = r = None
    for table in (meta.get("config") or {}).values():
        if isinstance(table, dict):
            q = table.get("max_query_tokens", q)
            r = table.get("max_response_tokens", r)
    return int(q or DEFAULT_MAX_QUERY_TOKENS), int(r or DEFAULT_MAX_RESPONSE_TOKENS)


def _check_checkpoint(ckpt: Path) -> dict[str, Any]:
    if not ckpt.is_dir():
        raise FileNotFoundError(f"checkpoint folder {ckpt} does not exist; train it with `prefsum train`")
    meta = read_meta(ckpt)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if not (ckpt / f).is_file():
            raise ExportError(f"{ckpt / f} is missing: {ckpt} is not a complete checkpoint; re-run its training stage")
    return meta


@contextlib.contextmanager
def _quiet():
    """optimum and torch.onnx print tracer warnings and progress for every export; keep stdout/stderr clean."""
    names = ("", "optimum", "transformers", "torch.onnx", "onnxruntime")  # "": quantize_dynamic logs to the root
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lv in levels.items():
            logging.getLogger(n).setLevel(lv)


def _optimum_export(ckpt: Path, out: Path, task: str, opset: int) -> None:
    import torch  # noqa: PLC0415
    from optimum.exporters.onnx import main_export  # noqa: PLC0415

    with _quiet(), torch.no_grad():
        main_export(
            str(ckpt),
            str(out),
            task=task,
            opset=opset,
            device="cpu",
            do_validation=False,  # parity is checked by our own tests against torch, on our own padding
            library_name="transformers",
        )
    if not (out / MODEL_FILE).is_file():
        raise ExportError(f"optimum wrote no {MODEL_FILE} for {ckpt} (task {task}); files: {sorted(os.listdir(out))}")


def _save(model, path: Path) -> None:
    import onnx  # noqa: PLC0415

    external = model.ByteSize() > 1_800_000_000  # protobuf's 2 GB limit: large models keep weights beside the graph
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
    )


def _last_position_logits(model) -> bool:
    """Make the graph project only the last position onto the vocabulary: logits (B, 1, V) instead of (B, T, V).

    The node producing ``logits`` is the LM head, MatMul(hidden (B, T, d), W (d, V)); a Slice of the hidden states on
    the time axis goes in front of it. Returns False (graph untouched) when the head is not a plain MatMul.
    """
    import numpy as np  # noqa: PLC0415
    from onnx import helper, numpy_helper  # noqa: PLC0415

    g = model.graph
    head = next((n for n in g.node if "logits" in n.output), None)
    if head is None or head.op_type != "MatMul":
        return False
    hidden = head.input[0]
    consts = {
        "prefsum_last_start": np.array([-1], dtype=np.int64),
        "prefsum_last_end": np.array([np.iinfo(np.int64).max], dtype=np.int64),
        "prefsum_last_axes": np.array([1], dtype=np.int64),
    }
    for name, value in consts.items():
        g.initializer.append(numpy_helper.from_array(value, name))
    sliced = hidden + "_last"
    node = helper.make_node("Slice", [hidden, *consts], [sliced], name="prefsum_last_position")
    head.input[0] = sliced
    idx = list(g.node).index(head)
    g.node.insert(idx, node)
    for out in g.output:
        if out.name == "logits":
            dims = out.type.tensor_type.shape.dim
            if len(dims) == 3:
                dims[1].ClearField("dim_param")
                dims[1].dim_value = 1
    return True


def _add_reward_output(model, bias: float) -> None:
    """Add output ``reward`` (B,) = logits[:, 0] - bias to a sequence-classification graph with logits (B, 1)."""
    import numpy as np  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    g = model.graph
    outs = [o.name for o in g.output]
    if outs != ["logits"]:
        raise ExportError(f"the reward graph has outputs {outs}, expected only 'logits' (B, 1); re-check the RM head")
    g.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "prefsum_flat_shape"))
    g.initializer.append(numpy_helper.from_array(np.array(bias, dtype=np.float32), "prefsum_reward_bias"))
    g.node.append(helper.make_node("Reshape", ["logits", "prefsum_flat_shape"], ["prefsum_raw_reward"]))
    g.node.append(helper.make_node("Sub", ["prefsum_raw_reward", "prefsum_reward_bias"], [REWARD_OUTPUT]))
    g.output.append(helper.make_tensor_value_info(REWARD_OUTPUT, TensorProto.FLOAT, ["batch_size"]))


def _add_summed_reward_output(model, bias: float) -> None:
    """For an RM trained with rm.pooling = "sum": input ``response_mask`` (B, T), 1 on the response and its EOS,
    and output ``reward`` (B,) = sum over T of score[:, t] * response_mask[:, t] - bias, where score (B, T, 1) is the
    head's output at every position (the MatMul whose weight is the (d, 1) head)."""
    import numpy as np  # noqa: PLC0415
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    g = model.graph
    heads = {i.name for i in g.initializer if len(i.dims) == 2 and i.dims[1] == 1}
    found = [n.output[0] for n in g.node if n.op_type == "MatMul" and n.input[1] in heads]
    if len(found) != 1:
        raise ExportError(
            f"the reward graph has {len(found)} MatMuls with a (d, 1) weight, expected exactly one (the RM's head); "
            "export this RM with rm.pooling = 'last' or re-check its head"
        )
    g.input.append(
        helper.make_tensor_value_info(RESPONSE_MASK_INPUT, TensorProto.INT64, ["batch_size", "sequence_length"])
    )
    g.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "prefsum_last_axis"))
    g.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "prefsum_time_axis"))
    g.initializer.append(numpy_helper.from_array(np.array(bias, dtype=np.float32), "prefsum_reward_bias"))
    g.node.extend(
        [
            helper.make_node("Squeeze", [found[0], "prefsum_last_axis"], ["prefsum_token_scores"]),
            helper.make_node("Cast", [RESPONSE_MASK_INPUT], ["prefsum_response_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["prefsum_token_scores", "prefsum_response_f"], ["prefsum_masked_scores"]),
            helper.make_node(
                "ReduceSum", ["prefsum_masked_scores", "prefsum_time_axis"], ["prefsum_raw_reward"], keepdims=0
            ),
            helper.make_node("Sub", ["prefsum_raw_reward", "prefsum_reward_bias"], [REWARD_OUTPUT]),
        ]
    )
    g.output.append(helper.make_tensor_value_info(REWARD_OUTPUT, TensorProto.FLOAT, ["batch_size"]))


INT8_MIN_WEIGHT = 1 << 17  # MatMul weights smaller than this stay fp32 (see _quantize_int8)


def _quantize_int8(src: Path, dst: Path, work: Path) -> dict[str, Any]:
    """Dynamic int8 weights (per output channel) for the large MatMuls.

    ORT first folds constants offline: the tied LM head is Transpose(embedding) in the exported graph, not an
    initializer, and would otherwise stay fp32. Then ``quantize_dynamic`` rewrites the MatMuls whose weight has at
    least INT8_MIN_WEIGHT elements, and always the largest one (the LM head at small scale). Each quantized MatMul
    adds a quantize-activations step; on a 0.9M-parameter model the 128-wide layer matrices got slower and agreed
    less with fp32 when quantized (docs/export.md), while on real models every matrix is far above the threshold.
    """
    import onnx  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    folded = work / "folded.onnx"
    large = sum(p.stat().st_size for p in src.parent.glob(src.name + "*")) > 1_800_000_000  # protobuf's 2 GB limit
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(folded)
    so.log_severity_level = 3
    if large:
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "folded.onnx.data")
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
    model = onnx.load(str(folded))
    sizes = {t.name: int(numpy_helper.to_array(t).size) for t in model.graph.initializer}
    weights = {n.name: sizes[n.input[1]] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in sizes}
    if not weights:
        raise ExportError("no MatMul with a constant weight found to quantize; export without --quantize")
    largest = max(weights.values())
    chosen = sorted(name for name, size in weights.items() if size >= min(largest, INT8_MIN_WEIGHT))
    with _quiet():
        quantize_dynamic(
            folded,
            dst,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=chosen,
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True},
            use_external_data_format=large,
        )
    return {
        "method": "onnxruntime quantize_dynamic",
        "weight_type": "int8",
        "per_channel": True,
        "min_weight_elements": INT8_MIN_WEIGHT,
        "quantized": chosen,
        "quantized_weights": sum(weights[n] for n in chosen),
        "fp32_weights": sum(v for n, v in weights.items() if n not in chosen),
    }


def _convert_fp16(model):
    from onnxruntime.transformers.float16 import convert_float_to_float16  # noqa: PLC0415

    # keep_io_types: inputs/outputs (past key values included) stay float32, so one engine code path serves both
    return convert_float_to_float16(model, keep_io_types=True)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    out = {}
    for pkg in ("optimum", "optimum-onnx", "torch", "transformers", "onnx", "onnxruntime-gpu", "onnxruntime"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def export_bundle(
    checkpoint_dir: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    quantize: str | None = None,
    fp16: bool = False,
    opset: int = DEFAULT_OPSET,
    max_query_tokens: int | None = None,
    max_response_tokens: int | None = None,
) -> Path:
    """Export ``checkpoint_dir`` to the bundle folder ``out_dir / name`` and return its path.

    ``name`` defaults to the checkpoint folder's name; ``quantize="int8"`` stores dynamic int8 weights in
    ``model.onnx`` (CPU speed; agreement with fp32 is measured in tests/test_export.py and docs/export.md);
    ``fp16=True`` stores float16 weights (for CUDAExecutionProvider; float32 inputs and outputs). The token budgets
    default to the ones in the checkpoint's prefsum.json config (else 512/48).
    """
    import onnx  # noqa: PLC0415

    ckpt = Path(checkpoint_dir)
    meta = _check_checkpoint(ckpt)
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"quantize must be one of {QUANTIZE_CHOICES} or None, got {quantize!r}")
    if quantize and fp16:
        raise ExportError("choose one of quantize='int8' (CPU) and fp16=True (CUDA), not both")
    name = name or ckpt.resolve().name
    if not name or "/" in name or name.startswith("."):
        raise ExportError(f"bundle name {name!r} must be a plain folder name (no '/', not starting with '.')")
    stage = str(meta.get("stage", ""))
    kind = "reward" if stage == "rm" else "policy"
    q_budget, r_budget = _budgets(meta)
    q_budget = max_query_tokens or q_budget
    r_budget = max_response_tokens or r_budget
    bias = float(meta.get("reward_bias", 0.0)) if kind == "reward" else 0.0

    config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    n_pos = config.get("max_position_embeddings") or config.get("n_positions")
    if n_pos and q_budget + r_budget > n_pos:
        raise ExportError(
            f"query + response budgets ({q_budget} + {r_budget}) exceed the model's {n_pos} positions; "
            "pass smaller max_query_tokens/max_response_tokens"
        )
    tok_cfg = json.loads((ckpt / "tokenizer_config.json").read_text(encoding="utf-8"))
    eos_id, pad_id = _special_ids(ckpt, tok_cfg)

    out_root = Path(out_dir)
    out_root.mkdir(parents=True, exist_ok=True)
    bundle = out_root / name
    tmp = make_temp_dir(bundle)
    try:
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=f".{name}.work.") as work_s:
            work = Path(work_s)
            task = "text-classification" if kind == "reward" else "text-generation-with-past"
            _optimum_export(ckpt, work / "onnx", task, opset)
            model = onnx.load(str(work / "onnx" / MODEL_FILE))
            graph_facts: dict[str, Any] = {"optimum_task": task}
            if kind == "policy":
                graph_facts["logits"] = "last" if _last_position_logits(model) else "all"
            else:
                pooling = pooling_of(meta)
                if pooling == "sum":
                    _add_summed_reward_output(model, bias)
                else:
                    _add_reward_output(model, bias)
                graph_facts["bias_in_graph"] = True
                graph_facts["reward_output"] = REWARD_OUTPUT
                graph_facts["reward_pooling"] = pooling
            graph_facts["inputs"] = [i.name for i in model.graph.input]
            graph_facts["arch"] = config.get("model_type")
            if fp16:
                model = _convert_fp16(model)
            if quantize == "int8":
                plain = work / "plain.onnx"
                _save(model, plain)
                graph_facts["quantization"] = _quantize_int8(plain, tmp / MODEL_FILE, work)
            else:
                _save(model, tmp / MODEL_FILE)
        for f in TOKENIZER_FILES:
            if (ckpt / f).is_file():
                shutil.copyfile(ckpt / f, tmp / f)
        settings = {"opset": opset, "quantize": quantize, "fp16": fp16, "versions": _versions(), **graph_facts}
        manifest = Manifest(
            kind=kind,
            name=name,
            task="tldr",
            max_query_tokens=q_budget,
            max_response_tokens=r_budget,
            eos_id=eos_id,
            pad_id=pad_id,
            reward_bias=bias,
            source={"checkpoint": str(ckpt.resolve()), "prefsum_sha256": sha256_file(ckpt / META_FILE), "stage": stage},
            files=hash_files(tmp),
            export=settings,
        )
        _normal_modes(tmp)
        write_manifest(tmp, manifest)
        swap_in(tmp, bundle)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return bundle


def _special_ids(ckpt: Path, tok_cfg: dict[str, Any]) -> tuple[int, int]:
    """EOS and [PAD] ids from the tokenizer files (no transformers import needed)."""
    from tokenizers import Tokenizer  # noqa: PLC0415

    from training.task import check_special_ids  # noqa: PLC0415

    tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))

    def token_id(key: str) -> int | None:
        value = tok_cfg.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        return tok.token_to_id(value) if isinstance(value, str) else None

    eos, pad = token_id("eos_token"), token_id("pad_token")
    try:
        check_special_ids(eos, pad)
    except ValueError as e:
        raise ExportError(f"{ckpt}: {e}") from None
    return eos, pad


def _normal_modes(folder: Path) -> None:
    from training.data import current_umask  # noqa: PLC0415

    mode = 0o666 & ~current_umask()
    for f in folder.iterdir():
        if f.is_file():
            os.chmod(f, mode)
