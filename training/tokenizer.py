"""Byte-level BPE tokenizer trained on a corpus, saved as a Hugging Face fast tokenizer.

EOS (``<|endoftext|>``) and ``[PAD]`` are two distinct special tokens (see ``training.task.check_special_ids``), and
``model_input_names`` is ``["input_ids", "attention_mask"]`` so no ``token_type_ids`` ever reaches a model or an ONNX
graph (a known export pitfall).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "[PAD]"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)


@dataclass(frozen=True)
class TokenizerConfig:
    """Settings for ``prefsum train tokenizer``."""

    vocab_size: int = 4096
    """Target vocabulary size including the 256 byte tokens and the special tokens."""
    min_frequency: int = 2
    """A merge must occur at least this often in the corpus to be learned."""
    model_max_length: int = 1024
    """Longest sequence the tokenizer reports as supported (query + response budgets must fit)."""


def _iter_lines(paths: Iterable[str | Path]) -> Iterable[str]:
    for p in paths:
        with open(p, encoding="utf-8") as f:
            yield from f


def train_tokenizer(corpus: Iterable[str | Path], out_dir: str | Path, config: TokenizerConfig = TokenizerConfig()):
    """Train byte-level BPE on the corpus files and save it to ``out_dir`` atomically; returns the HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: PLC0415

    paths = [Path(p) for p in corpus]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"tokenizer corpus {p} does not exist; run `prefsum data synth` first")
    if config.vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size {config.vocab_size} is too small for byte-level BPE; use at least 300")

    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: " word" and "word" stay different, as in GPT-2; responses start with a space anyway.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_iter_lines(paths), trainer=trainer)
    hf = wrap_tokenizer(tok, config.model_max_length)
    save_tokenizer(hf, out_dir)
    return hf


def wrap_tokenizer(tok, model_max_length: int = 1024):
    """Wrap a ``tokenizers.Tokenizer`` (with our special tokens) as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
    )
    hf.model_input_names = ["input_ids", "attention_mask"]
    return hf


def save_tokenizer(hf, out_dir: str | Path) -> None:
    """Save next to ``out_dir`` in a temp folder, then swap it in, so a crash never leaves half a tokenizer."""
    from training.checkpoint import make_temp_dir  # noqa: PLC0415

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out)
    try:
        hf.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_tokenizer(path: str | Path):
    """Load a saved tokenizer and check its special tokens."""
    from transformers import AutoTokenizer  # noqa: PLC0415

    from training.task import check_special_ids  # noqa: PLC0415

    if not Path(path).is_dir():
        raise FileNotFoundError(f"tokenizer folder {path} does not exist; run `prefsum train tokenizer` first")
    hf = AutoTokenizer.from_pretrained(str(path))
    hf.model_input_names = ["input_ids", "attention_mask"]
    check_special_ids(hf.eos_token_id, hf.pad_token_id)
    return hf


def token_counter(hf):
    """``count_tokens(text)`` for ``training.task`` from a HF tokenizer (no special tokens added)."""
    return lambda text: len(hf(text, add_special_tokens=False)["input_ids"])
