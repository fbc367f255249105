"""The inference engine: exported bundles run in ONNX Runtime with a numpy generation loop (no torch).

Used in-process by the service and by the evals (it satisfies ``evals.protocols.Summarizer`` / ``Scorer``).

Policy generation, per batch of queries (B rows, the longest has T tokens):

1. format each item as the paper's query and truncate it to the bundle's query budget (``training.task``)
2. left-pad with [PAD] to (B, T); attention mask 0 on padding; position ids count real tokens only (0 at each row's
   first real token), so a row's numbers do not depend on how much padding its batch needed
3. prompt pass with an empty past -> logits of the last position (B, V) and the past key values (B, H, T, D)
4. one token per step: greedy argmax (temperature 0) or nucleus sampling; a row that produced EOS keeps receiving
   [PAD] (masked out for nobody else) until every row is done or the budget is spent
5. response = tokens before the first EOS; text in the public format (one leading space)

Reward scoring: query + summary (cut to the response budget) + EOS, right-padded; the graph returns the reward at the
last non-pad token minus the bias that centres references at 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service._ort import ProviderError, create_session
from training.manifest import MANIFEST_FILE, MODEL_FILE, RESPONSE_MASK_INPUT, BundleError, Manifest, verify_bundle
from training.task import (
    QueryTooLong,
    clean_summary,
    format_news,
    format_tldr,
    news_query,
    reference_response,
    response_tokens,
    tldr_query,
)

__all__ = [
    "BundleError",
    "Completion",
    "EngineInputError",
    "PolicyEngine",
    "ProviderError",
    "RewardEngine",
    "best_of_n",
    "load_bundles",
    "load_engine",
]

TLDR_FIELDS = ("subreddit", "title", "post")
GEN_BATCH = 32  # rows per generation batch (bounds the past key values' memory)
SCORE_BATCH = 64  # sequences per reward batch


class EngineInputError(ValueError):
    """Bad input to an engine call (missing field, empty batch, out-of-range setting); the message names it."""


@dataclass(frozen=True)
class Completion:
    """One generated summary."""

    text: str
    """Public-format summary text (one leading space; empty when the policy stopped at once)."""
    tokens: int
    """Response tokens, EOS excluded."""
    finish_reason: str
    """"eos" (the policy ended it) or "length" (the token budget ended it)."""
    score: float | None = None
    """Bias-corrected reward (set by best_of_n)."""


# --------------------------------------------------------------------------------------------------- tokenizer


class _Tokenizer:
    """The bundle's tokenizer through the ``tokenizers`` library (what transformers' fast tokenizer wraps)."""

    def __init__(self, bundle: Path, manifest: Manifest):
        from tokenizers import Tokenizer  # noqa: PLC0415

        self.tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()
        self.eos, self.pad = manifest.eos_id, manifest.pad_id
        # Longest token in bytes (byte-level BPE): a text of N bytes has at least N / max_bytes tokens, which lets
        # truncation skip tokenizing candidates that are certainly over budget (see _query_ids).
        self.max_token_bytes: int | None = None
        pre = self.tok.pre_tokenizer
        if pre is not None and type(pre).__name__ == "ByteLevel" and self.tok.normalizer is None:
            self.max_token_bytes = max(len(t) for t in self.tok.get_vocab())

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)


def _item_query(item: Any, index: int, tok: _Tokenizer, budget: int) -> list[int]:
    """Token ids of the paper's query for an API item, truncated to ``budget`` exactly as training.task does."""
    where = f"items[{index}]"
    if not isinstance(item, Mapping):
        raise EngineInputError(
            f"{where} must be an object with subreddit/title/post or text, got {type(item).__name__}"
        )
    for key in (*TLDR_FIELDS, "text"):
        if key in item and not isinstance(item[key], str):
            raise EngineInputError(f"{where}.{key} must be a string, got {type(item[key]).__name__}")
    if "text" in item:  # a news article: "{article}\n\nTL;DR:"
        if not item["text"].strip():
            raise EngineInputError(f"{where}.text is empty; give the article text")
        render, body_field = format_news, "text"
    else:
        missing = [k for k in TLDR_FIELDS if k not in item]
        if missing:
            raise EngineInputError(
                f"{where} is missing field(s) {', '.join(missing)}; give subreddit, title and post (TL;DR) "
                "or text (a news article)"
            )
        for key in ("subreddit", "post"):
            if not item[key].strip():
                raise EngineInputError(f"{where}.{key} is empty; give the {key}")
        sub, title = item["subreddit"], item["title"]

        def render(body: str) -> str:
            return format_tldr(sub, title, body)

        body_field = "post"
    body = item[body_field].strip()
    if tok.max_token_bytes:
        body = _precut(body, render, tok.max_token_bytes * budget)
    try:
        if body_field == "text":
            q = news_query(body, max_tokens=budget, count_tokens=tok.count)
        else:
            q = tldr_query(sub, title, body, max_tokens=budget, count_tokens=tok.count)
    except QueryTooLong as e:
        raise EngineInputError(f"{where}.{'title' if body_field == 'post' else 'text'}: {e}") from None
    return tok.encode(q.text)


def _precut(body: str, render: Callable[[str], str], byte_limit: int) -> str:
    """Apply training.task's truncation steps to candidates that are certainly over budget, without tokenizing.

    A text of N bytes has at least N / max_token_bytes tokens, so while the rendered query has more than
    ``byte_limit`` = budget * max_token_bytes bytes it is over budget and training.task would cut it again. Cutting
    here with the same rule (at the last newline, else one character at a time) reaches the same final query, in
    linear time even for a long post without newlines. ``body`` is stripped; so is every candidate.
    """
    extra = len(render("").encode("utf-8"))  # the template around the body; the body goes in verbatim
    while body and extra + len(body.encode("utf-8")) > byte_limit:
        i = body.rfind("\n")
        if i >= 0:
            body = body[:i].rstrip()
            continue
        # No newline left: candidates are prefixes. Every prefix longer than p characters is over budget, and
        # cutting one character at a time reaches body[:p].rstrip() first among prefixes of length <= p.
        allowed = max(byte_limit - extra, 0)
        p = len(body.encode("utf-8")[:allowed].decode("utf-8", errors="ignore"))
        body = body[:p].rstrip()
        break
    return body


# --------------------------------------------------------------------------------------------------- sampling


def _sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> np.ndarray:
    """Next tokens (B,) from last-position logits (B, V): argmax at temperature 0, else nucleus sampling
    (the smallest set of tokens whose probability reaches top_p; top_k is never applied)."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-p, axis=-1, kind="stable")  # (B, V) most likely first
        sorted_p = np.take_along_axis(p, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p  # probability mass strictly before each token
        keep_sorted = before < top_p  # the first token is always kept
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    u = rng.random((p.shape[0], 1))
    cdf = np.cumsum(p, axis=-1)
    cdf[:, -1] = np.inf  # rounding can leave the total a hair under u
    return (cdf < u).sum(axis=-1)


# --------------------------------------------------------------------------------------------------- engines


class _Engine:
    kind = ""

    def __init__(self, bundle_dir: str | Path, manifest: Manifest, *, threads: int | None, provider: str):
        self.path = Path(bundle_dir)
        self.name = self.path.name
        self.manifest = manifest
        self.session, self.provider = create_session(self.path / MODEL_FILE, threads=threads, provider=provider)
        self.tokenizer = _Tokenizer(self.path, manifest)
        self.threads = threads

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, provider={self.provider!r})"

    def encode_queries(self, items: Sequence[Mapping[str, Any]]) -> list[list[int]]:
        """The query token ids this engine feeds the model for each item (formatted and truncated)."""
        _check_batch(items)
        return [_item_query(item, i, self.tokenizer, self.manifest.max_query_tokens) for i, item in enumerate(items)]


def _check_batch(items: Any, what: str = "items") -> None:
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise EngineInputError(f"{what} must be a list, got {type(items).__name__}")
    if len(items) == 0:
        raise EngineInputError(f"{what} is empty; give at least one")


class PolicyEngine(_Engine):
    """A policy bundle: batched generation with past key values."""

    kind = "policy"

    def __init__(self, bundle_dir, manifest, *, threads=None, provider="auto"):
        super().__init__(bundle_dir, manifest, threads=threads, provider=provider)
        inputs = {i.name: i for i in self.session.get_inputs()}
        if "input_ids" not in inputs or "attention_mask" not in inputs:
            raise BundleError(f"{self.path / MODEL_FILE} has no input_ids/attention_mask inputs; re-export the bundle")
        self._has_positions = "position_ids" in inputs
        self._past: list[tuple[str, str, tuple[int, int], Any]] = []  # (input name, output name, (H, D), dtype)
        outputs = {o.name for o in self.session.get_outputs()}
        for name, arg in inputs.items():
            if not name.startswith("past_key_values."):
                continue
            present = "present." + name[len("past_key_values.") :]
            if present not in outputs:
                raise BundleError(f"{self.path / MODEL_FILE}: no output {present} for input {name}; re-export")
            _, heads, _, dim = arg.shape
            dtype = np.float16 if arg.type == "tensor(float16)" else np.float32
            self._past.append((name, present, (int(heads), int(dim)), dtype))
        if not self._past:
            raise BundleError(
                f"{self.path / MODEL_FILE} has no past key values (export with text-generation-with-past)"
            )
        self._outputs = ["logits"] + [p[1] for p in self._past]
        self._device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"

    # -- public API

    def summarize(
        self,
        items: Sequence[Mapping[str, Any]],
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        """``n`` summaries per item (greedy at temperature 0, the paper's choice). -> one list of n per item."""
        raw = self._summarize_ids(
            items, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed
        )
        return [[c for c, _ in row] for row in raw]

    # -- internals

    def _check_settings(self, max_new_tokens, temperature, top_p, n) -> int:
        budget = self.manifest.max_response_tokens
        if max_new_tokens is None:
            max_new_tokens = budget
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= budget:
            raise EngineInputError(
                f"max_new_tokens must be an integer in [1, {budget}] (this bundle's response budget)"
            )
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
            raise EngineInputError(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
        if not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise EngineInputError(f"top_p must be in (0, 1], got {top_p!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise EngineInputError(f"n must be an integer >= 1, got {n!r}")
        return max_new_tokens

    def _summarize_ids(self, items, *, max_new_tokens, temperature, top_p, n, seed):
        """-> per item, n pairs (Completion, response token ids before EOS)."""
        max_new = self._check_settings(max_new_tokens, temperature, top_p, n)
        queries = self.encode_queries(items)
        rng = np.random.default_rng(seed)
        greedy = temperature == 0
        reps = 1 if greedy else n  # greedy samples are all the same: generate once, repeat
        rows = [q for q in queries for _ in range(reps)]
        results: list[tuple[list[int], str]] = []
        for s in range(0, len(rows), GEN_BATCH):
            results += self.generate_ids(rows[s : s + GEN_BATCH], max_new, temperature, top_p, rng)
        out = []
        for i in range(len(queries)):
            mine = results[i * reps : (i + 1) * reps]
            if greedy:
                mine = mine * n
            out.append([(self._completion(toks, finish), toks) for toks, finish in mine])
        return out

    def _completion(self, toks: list[int], finish: str) -> Completion:
        return Completion(clean_summary(self.tokenizer.decode(toks)), len(toks), finish)

    def generate_ids(
        self,
        queries: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> list[tuple[list[int], str]]:
        """Responses for token-id queries in one batch: (tokens before EOS, "eos" | "length") per query."""
        eos, pad = self.manifest.eos_id, self.manifest.pad_id
        rng = rng if rng is not None else np.random.default_rng()
        B = len(queries)
        T = max(len(q) for q in queries)
        if min(len(q) for q in queries) == 0:
            raise EngineInputError("a query has no tokens")
        ids = np.full((B, T), pad, dtype=np.int64)
        mask = np.zeros((B, T), dtype=np.int64)
        for i, q in enumerate(queries):
            ids[i, T - len(q) :] = q
            mask[i, T - len(q) :] = 1
        pos = np.cumsum(mask, axis=1) - 1
        pos[mask == 0] = 1  # any value: these positions are masked out

        # The past key values stay ORT values between steps (IOBinding): no conversion to numpy and back; on CUDA
        # they stay on the device and only the last position's logits (B, V) come to the host.
        sess, device = self.session, self._device
        bind = sess.io_binding()
        bind.bind_cpu_input("input_ids", ids)
        bind.bind_cpu_input("attention_mask", mask)
        if self._has_positions:
            bind.bind_cpu_input("position_ids", pos)
        for name, _, (heads, dim), dtype in self._past:
            bind.bind_cpu_input(name, np.zeros((B, heads, 0, dim), dtype=dtype))
        for name in self._outputs:
            bind.bind_output(name, "cpu" if name == "logits" else device)

        full_mask = np.ones((B, T + max_new_tokens), dtype=np.int64)  # (B, T + N): grows by one column a step
        full_mask[:, :T] = mask
        next_pos = pos[:, -1:] + 1  # (B, 1): the position of the first new token
        tokens = np.full((B, max_new_tokens), pad, dtype=np.int64)
        done = np.zeros(B, dtype=bool)
        steps = 0
        for step in range(max_new_tokens):
            sess.run_with_iobinding(bind)
            out = bind.get_outputs()
            logits = out[0].numpy()  # (B, 1, V) or (B, t, V) when the graph returns every position
            nxt = _sample(logits[:, -1, :], temperature, top_p, rng)
            nxt = np.where(done, pad, nxt)
            tokens[:, step] = nxt
            steps = step + 1
            done |= nxt == eos
            if done.all() or step + 1 == max_new_tokens:
                break
            # inputs held in locals until the next run (the binding may refer to their memory)
            step_ids = np.ascontiguousarray(nxt[:, None], dtype=np.int64)  # (B, 1)
            step_mask = np.ascontiguousarray(full_mask[:, : T + step + 1])  # (B, T + step + 1)
            step_pos = next_pos + step  # (B, 1)
            bind = sess.io_binding()
            bind.bind_cpu_input("input_ids", step_ids)
            bind.bind_cpu_input("attention_mask", step_mask)
            if self._has_positions:
                bind.bind_cpu_input("position_ids", step_pos)
            for (name, _, _, _), value in zip(self._past, out[1:], strict=True):
                bind.bind_ortvalue_input(name, value)
            for name in self._outputs:
                bind.bind_output(name, "cpu" if name == "logits" else device)
        return [
            (response_tokens(row, eos, pad), "eos" if eos in row else "length") for row in tokens[:, :steps].tolist()
        ]


class RewardEngine(_Engine):
    """A reward bundle: bias-corrected rewards of (item, summary) pairs."""

    kind = "reward"

    def __init__(self, bundle_dir, manifest, *, threads=None, provider="auto"):
        super().__init__(bundle_dir, manifest, threads=threads, provider=provider)
        names = [o.name for o in self.session.get_outputs()]
        self._bias_in_graph = "reward" in names
        self._output = "reward" if self._bias_in_graph else names[0]
        self._inputs = {i.name for i in self.session.get_inputs()}

    def score(self, pairs: Sequence[tuple[Mapping[str, Any], str]]) -> list[float]:
        """Bias-corrected rewards (references score 0 on average) of summaries in the public format."""
        _check_batch(pairs, "pairs")
        seqs, starts = [], []
        budget = self.manifest.max_response_tokens
        cache: dict[int, list[int]] = {}
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise EngineInputError(f"pairs[{i}] must be (item, summary)")
            item, summary = pair
            if not isinstance(summary, str):
                raise EngineInputError(f"pairs[{i}] summary must be a string, got {type(summary).__name__}")
            key = id(item)
            if key not in cache:
                cache[key] = _item_query(item, i, self.tokenizer, self.manifest.max_query_tokens)
            resp = self.tokenizer.encode(reference_response(summary)) if summary.strip() else []
            seqs.append(cache[key] + resp[: budget - 1] + [self.manifest.eos_id])
            starts.append(len(cache[key]))
        return self.score_ids(seqs, starts)

    def preference(self, item: Mapping[str, Any], a: str, b: str) -> float:
        """P(a preferred over b) under the reward model: sigmoid(r_a - r_b)."""
        ra, rb = self.score([(item, a), (item, b)])
        return 1.0 / (1.0 + math.exp(-(ra - rb)))

    def score_ids(self, seqs: Sequence[Sequence[int]], starts: Sequence[int] | None = None) -> list[float]:
        """Bias-corrected rewards of token sequences (query + response + EOS): read at each one's last token, or, for
        an RM trained with rm.pooling = "sum", summed from ``starts[i]`` (the query's length) to the end."""
        pad = self.manifest.pad_id
        summed = RESPONSE_MASK_INPUT in self._inputs
        if summed and (starts is None or len(starts) != len(seqs)):
            raise EngineInputError("this reward bundle sums over the response: pass each sequence's query length")
        out: list[float] = []
        for s in range(0, len(seqs), SCORE_BATCH):
            chunk = seqs[s : s + SCORE_BATCH]
            T = max(len(x) for x in chunk)
            ids = np.full((len(chunk), T), pad, dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, x in enumerate(chunk):
                ids[i, : len(x)] = x
                mask[i, : len(x)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if summed:
                resp = mask.copy()
                for i, start in enumerate(starts[s : s + SCORE_BATCH]):
                    resp[i, :start] = 0
                feeds[RESPONSE_MASK_INPUT] = resp
            if "position_ids" in self._inputs:
                feeds["position_ids"] = np.broadcast_to(np.arange(T, dtype=np.int64), ids.shape).copy()
            r = self.session.run([self._output], feeds)[0].reshape(len(chunk), -1)[:, 0].astype(np.float64)
            if not self._bias_in_graph:
                r = r - self.manifest.reward_bias
            out += r.tolist()
        return out


def best_of_n(
    policy: PolicyEngine,
    reward: RewardEngine,
    items: Sequence[Mapping[str, Any]],
    *,
    n: int,
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_new_tokens: int | None = None,
    seed: int | None = None,
) -> list[Completion]:
    """For each item, ``n`` sampled summaries and the one the reward model scores highest (its ``score`` set).

    When both bundles share a tokenizer the RM scores the sampled tokens themselves (query + tokens + EOS, as
    training.best_of_n does); otherwise it scores the texts.
    """
    cands = policy._summarize_ids(
        items, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed
    )
    same_tok = policy.manifest.files.get("tokenizer.json") == reward.manifest.files.get("tokenizer.json")
    if same_tok:
        queries = reward.encode_queries(items)
        seqs = [q + toks + [reward.manifest.eos_id] for q, row in zip(queries, cands, strict=True) for _, toks in row]
        flat = reward.score_ids(seqs, [len(q) for q, row in zip(queries, cands, strict=True) for _ in row])
    else:
        flat = reward.score([(item, c.text) for item, row in zip(items, cands, strict=True) for c, _ in row])
    kept = []
    for i, row in enumerate(cands):
        scores = flat[i * n : (i + 1) * n]
        k = max(range(n), key=scores.__getitem__)
        kept.append(dataclasses.replace(row[k][0], score=float(scores[k])))
    return kept


# --------------------------------------------------------------------------------------------------- loading


def load_engine(
    bundle_dir: str | Path, *, threads: int | None = None, provider: str = "auto"
) -> PolicyEngine | RewardEngine:
    """Verify a bundle's files against its manifest and load it (a policy or a reward engine)."""
    manifest = verify_bundle(bundle_dir)
    cls = PolicyEngine if manifest.kind == "policy" else RewardEngine
    return cls(bundle_dir, manifest, threads=threads, provider=provider)


def load_bundles(
    root_dir: str | Path, *, threads: int | None = None, provider: str = "auto"
) -> dict[str, PolicyEngine | RewardEngine]:
    """Every bundle under ``root_dir`` (each subfolder with a manifest.json), keyed by folder name."""
    root = Path(root_dir)
    if not root.is_dir():
        raise BundleError(f"bundles folder {root} does not exist; export checkpoints into it with `prefsum export`")
    engines: dict[str, PolicyEngine | RewardEngine] = {}
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not sub.name.startswith(".") and (sub / MANIFEST_FILE).is_file():
            engines[sub.name] = load_engine(sub, threads=threads, provider=provider)
    return engines
