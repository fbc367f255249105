"""Loaders and validators for the public data formats (DESIGN.md, "Public formats").

Everything past the loader is a typed, frozen record, never a dict. The same code reads the real data (TL;DR filtered
posts, the comparison and axis-eval releases of Stiennon et al., CNN/DailyMail) and the offline world's files, so the
two go through one path. No torch here: service and evals import this module too.

Validation collects *every* problem in a file as ``PATH:LINE: field: problem`` instead of stopping at the first, so a
person fixing a hand-made file sees the whole list at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Format = Literal["tldr", "comparisons", "axis", "cnndm"]
FORMATS: tuple[str, ...] = ("tldr", "comparisons", "axis", "cnndm")
COMPARISON_SPLITS = frozenset({"train", "valid1", "valid2"})
# The axis-eval release uses valid1/valid2/test; "valid" is what some re-uploads call the merged validation split.
AXIS_SPLITS = frozenset({"train", "valid", "valid1", "valid2", "test"})
AXIS_NAMES = ("overall", "accuracy", "coverage", "coherence")


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class TldrPost:
    """One Reddit post with its reference TL;DR (the ``summary`` field of the filtered TL;DR release)."""

    id: str
    subreddit: str
    title: str
    post: str
    summary: str


@dataclass(frozen=True, slots=True)
class NewsArticle:
    """One CNN/DailyMail story: ``highlights`` are the reference summary (newline-separated bullet sentences)."""

    id: str
    article: str
    highlights: str


@dataclass(frozen=True, slots=True)
class PostInfo:
    """The ``info`` of a TL;DR comparison or axis eval: the post being summarised."""

    id: str
    post: str
    title: str
    subreddit: str


@dataclass(frozen=True, slots=True)
class ArticleInfo:
    """The ``info`` of a CNN/DM comparison or axis eval: the article being summarised."""

    id: str
    article: str
    site: str | None
    title: str | None


Info = PostInfo | ArticleInfo


@dataclass(frozen=True, slots=True)
class Summary:
    """A summary inside a comparison. ``text`` begins with a space in the public data (it follows "TL;DR:")."""

    text: str
    policy: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """A labeler's choice between two summaries of one post/article. ``choice`` is the index of the preferred one."""

    info: Info
    summaries: tuple[Summary, Summary]
    choice: int
    worker: str
    batch: str
    split: str
    confidence: int | None = None

    @property
    def preferred(self) -> Summary:
        return self.summaries[self.choice]


@dataclass(frozen=True, slots=True)
class Axes:
    """1-7 Likert ratings; ``None`` where the labeler gave none (the public release has gaps)."""

    overall: int | None
    accuracy: int | None = None
    coverage: int | None = None
    coherence: int | None = None


@dataclass(frozen=True, slots=True)
class AxisEval:
    """One labeler's 1-7 ratings of one summary."""

    info: Info
    split: str
    summary: Summary
    axes: Axes
    worker: str
    batch: str


Record = TldrPost | NewsArticle | Comparison | AxisEval


# --------------------------------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.field}: {self.message}"


class DataError(ValueError):
    """A data file has problems; ``problems`` lists every one, ``str()`` shows the first few."""

    def __init__(self, problems: list[Problem], limit: int = 10):
        self.problems = problems
        shown = "\n".join(str(p) for p in problems[:limit])
        more = f"\n... and {len(problems) - limit} more" if len(problems) > limit else ""
        hint = "\n(run `prefsum data validate PATH --format FORMAT` to list every problem)"
        super().__init__(f"{len(problems)} problem(s) in data:\n{shown}{more}{hint}")


class _Invalid(Exception):
    """Raised inside a record parser; carries the dotted field path and the problem."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------------- field readers


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _obj(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _Invalid(where or "record", f"expected a JSON object, got {_type_name(raw)}")
    return raw


def _str(obj: dict[str, Any], key: str, where: str, *, optional: bool = False, nonempty: bool = True) -> str | None:
    name = f"{where}.{key}" if where else key
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise _Invalid(name, "missing" if key not in obj else "is null; expected a string")
    value = obj[key]
    if not isinstance(value, str):
        raise _Invalid(name, f"expected a string, got {_type_name(value)}")
    if nonempty and not value.strip():
        raise _Invalid(name, "is empty")
    return value


def _id(obj: dict[str, Any], key: str, where: str) -> str:
    """Ids and worker/batch names: strings in the public data; integers are accepted and turned into strings."""
    name = f"{where}.{key}" if where else key
    if key not in obj or obj[key] is None:
        raise _Invalid(name, "missing")
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Invalid(name, f"expected a string, got {_type_name(value)}")
    value = str(value)
    if not value.strip():
        raise _Invalid(name, "is empty")
    return value


def _split(obj: dict[str, Any], allowed: frozenset[str]) -> str:
    value = _str(obj, "split", "")
    if value not in allowed:
        raise _Invalid("split", f"unknown split {value!r}; expected one of {', '.join(sorted(allowed))}")
    return value


def _info(raw: Any) -> Info:
    info = _obj(raw, "info")
    # The public release stores both shapes with nulls for the other's keys: an article means a news item.
    if info.get("article") is not None:
        return ArticleInfo(
            id=_id(info, "id", "info"),
            article=_str(info, "article", "info"),
            site=_str(info, "site", "info", optional=True, nonempty=False),
            title=_str(info, "title", "info", optional=True, nonempty=False),
        )
    if "post" not in info:
        raise _Invalid("info", "missing both 'post' (TL;DR) and 'article' (CNN/DM); one of them is required")
    return PostInfo(
        id=_id(info, "id", "info"),
        post=_str(info, "post", "info"),
        title=_str(info, "title", "info", nonempty=False),
        subreddit=_str(info, "subreddit", "info"),
    )


def _summary(raw: Any, where: str) -> Summary:
    s = _obj(raw, where)
    return Summary(
        text=_str(s, "text", where),
        policy=_id(s, "policy", where),
        note=_str(s, "note", where, optional=True, nonempty=False),
    )


def _int_in(value: Any, name: str, lo: int, hi: int, *, optional: bool) -> int | None:
    if value is None:
        if optional:
            return None
        raise _Invalid(name, "missing")
    # bool is an int subclass in Python; a JSON true is not a rating.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise _Invalid(name, f"expected an integer {lo}-{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise _Invalid(name, f"{value} is outside {lo}-{hi}")
    return int(value)


# --------------------------------------------------------------------------------------------------- parsers


def parse_tldr(raw: Any) -> TldrPost:
    o = _obj(raw, "")
    return TldrPost(
        id=_id(o, "id", ""),
        subreddit=_str(o, "subreddit", ""),
        title=_str(o, "title", "", nonempty=False),
        post=_str(o, "post", ""),
        summary=_str(o, "summary", ""),
    )


def parse_cnndm(raw: Any) -> NewsArticle:
    o = _obj(raw, "")
    return NewsArticle(id=_id(o, "id", ""), article=_str(o, "article", ""), highlights=_str(o, "highlights", ""))


def parse_comparison(raw: Any) -> Comparison:
    o = _obj(raw, "")
    info = _info(o.get("info"))
    summaries = o.get("summaries")
    if not isinstance(summaries, list) or len(summaries) != 2:
        got = f"{len(summaries)} items" if isinstance(summaries, list) else _type_name(summaries)
        raise _Invalid("summaries", f"expected a list of exactly 2 summaries, got {got}")
    pair = (_summary(summaries[0], "summaries[0]"), _summary(summaries[1], "summaries[1]"))
    choice = o.get("choice")
    if isinstance(choice, bool) or choice not in (0, 1):
        raise _Invalid("choice", f"must be 0 or 1 (index of the preferred summary), got {choice!r}")
    extra = o.get("extra") or {}
    if not isinstance(extra, dict):
        raise _Invalid("extra", f"expected an object, got {_type_name(extra)}")
    confidence = _int_in(extra.get("confidence"), "extra.confidence", 1, 9, optional=True)
    return Comparison(
        info=info,
        summaries=pair,
        choice=int(choice),
        worker=_id(o, "worker", ""),
        batch=_id(o, "batch", ""),
        split=_split(o, COMPARISON_SPLITS),
        confidence=confidence,
    )


def parse_axis(raw: Any) -> AxisEval:
    o = _obj(raw, "")
    info = _info(o.get("info"))
    summary_raw = _obj(o.get("summary"), "summary")
    summary = _summary(summary_raw, "summary")
    axes_raw = _obj(summary_raw.get("axes"), "summary.axes")
    axes = Axes(**{a: _int_in(axes_raw.get(a), f"summary.axes.{a}", 1, 7, optional=True) for a in AXIS_NAMES})
    if all(getattr(axes, a) is None for a in AXIS_NAMES):
        raise _Invalid("summary.axes", f"no rating given; expected at least one of {', '.join(AXIS_NAMES)} (1-7)")
    return AxisEval(
        info=info,
        split=_split(o, AXIS_SPLITS),
        summary=summary,
        axes=axes,
        worker=_id(o, "worker", ""),
        batch=_id(o, "batch", ""),
    )


PARSERS: dict[str, Callable[[Any], Record]] = {
    "tldr": parse_tldr,
    "comparisons": parse_comparison,
    "axis": parse_axis,
    "cnndm": parse_cnndm,
}


# --------------------------------------------------------------------------------------------------- to JSON


def _summary_json(s: Summary) -> dict[str, Any]:
    return {"text": s.text, "policy": s.policy, "note": s.note}


def to_json(record: Record) -> dict[str, Any]:
    """The public-format dict for a record (inverse of the parsers)."""
    if isinstance(record, (TldrPost, NewsArticle)):
        return asdict(record)
    if isinstance(record, Comparison):
        return {
            "info": asdict(record.info),
            "summaries": [_summary_json(s) for s in record.summaries],
            "choice": record.choice,
            "worker": record.worker,
            "batch": record.batch,
            "split": record.split,
            "extra": {"confidence": record.confidence},
        }
    if isinstance(record, AxisEval):
        summary = _summary_json(record.summary) | {"axes": asdict(record.axes)}
        return {
            "info": asdict(record.info),
            "split": record.split,
            "summary": summary,
            "worker": record.worker,
            "batch": record.batch,
        }
    raise TypeError(f"not a public-format record: {type(record).__name__}")


# --------------------------------------------------------------------------------------------------- files


@dataclass
class ValidationResult:
    path: str
    format: str
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_format(fmt: str) -> Callable[[Any], Record]:
    if fmt not in PARSERS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return PARSERS[fmt]


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any | Problem]]:
    """Yield ``(line_number, parsed JSON or Problem)`` for each non-blank line; a UTF-8 BOM is accepted."""
    p = str(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield (
                    lineno,
                    Problem(p, lineno, "line", f"invalid UTF-8 at byte {e.start}; re-encode the file as UTF-8"),
                )
                continue
            if not text.strip():
                continue
            try:
                yield lineno, json.loads(text)
            except json.JSONDecodeError as e:
                yield lineno, Problem(p, lineno, "line", f"bad JSON: {e.msg} (column {e.colno})")


def validate_file(path: str | Path, fmt: str) -> ValidationResult:
    """Parse every line of a JSONL file; collect all records and all problems."""
    parser = _check_format(fmt)
    result = ValidationResult(path=str(path), format=fmt)
    for lineno, item in iter_json_lines(path):
        if isinstance(item, Problem):
            result.problems.append(item)
            continue
        try:
            result.records.append(parser(item))
        except _Invalid as e:
            result.problems.append(Problem(str(path), lineno, e.field, e.message))
    return result


def load(path: str | Path, fmt: str) -> list[Record]:
    """Load a JSONL file in a public format; raise :class:`DataError` listing every problem if any."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a {fmt} JSONL file)")
    result = validate_file(path, fmt)
    if result.problems:
        raise DataError(result.problems)
    return result.records


def load_tldr(path: str | Path) -> list[TldrPost]:
    return load(path, "tldr")  # type: ignore[return-value]


def load_comparisons(path: str | Path) -> list[Comparison]:
    return load(path, "comparisons")  # type: ignore[return-value]


def load_axis(path: str | Path) -> list[AxisEval]:
    return load(path, "axis")  # type: ignore[return-value]


def load_cnndm(path: str | Path) -> list[NewsArticle]:
    return load(path, "cnndm")  # type: ignore[return-value]


def sniff_format(path: str | Path) -> str | None:
    """Guess the format of a JSONL file from its first parsable record (None if it fits none)."""
    for _, item in iter_json_lines(path):
        if isinstance(item, Problem) or not isinstance(item, dict):
            return None
        for fmt in ("comparisons", "axis", "tldr", "cnndm"):
            try:
                PARSERS[fmt](item)
                return fmt
            except _Invalid:
                pass
        return None
    return None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints, bundles and data files are hashed alike)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def current_umask() -> int:
    """The process umask (read without changing it for longer than the call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a file so that readers see the old content or the new, never half of it (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[Record | dict[str, Any]]) -> int:
    """Atomically write records (or plain dicts) as JSONL, one compact object per line; returns the count."""
    lines = [json.dumps(r if isinstance(r, dict) else to_json(r), ensure_ascii=False) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


# --------------------------------------------------------------------------------------------------- hub (optional)

HUB_DATASETS = {
    # name -> (hub id, config) ; loaded only when the network allows and `datasets` is installed (extra "hub").
    "tldr": ("vwxyzjn/summarize_from_feedback_tldr_3_filtered", None),
    "comparisons": ("openai/summarize_from_feedback", "comparisons"),
    "axis": ("openai/summarize_from_feedback", "axis"),
    "cnndm": ("abisee/cnn_dailymail", "3.0.0"),
}


def load_hub(fmt: str, split: str, limit: int | None = None) -> list[Record]:
    """Load a public dataset from the Hugging Face hub through the same parsers as the JSONL files.

    Needs the optional extra (``pip install 'prefsum[hub]'``) and network access. Never used by the tests or the
    default (offline) run. Rows that do not parse raise :class:`DataError` naming the split and row index.
    """
    parser = _check_format(fmt)
    try:
        import datasets  # noqa: PLC0415 - optional dependency, imported only here
    except ImportError as e:
        raise RuntimeError("loading hub datasets needs the 'hub' extra: pip install 'prefsum[hub]'") from e
    hub_id, config = HUB_DATASETS[fmt]
    try:
        ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # network, auth, unknown split: say what was asked and how to work offline
        raise RuntimeError(
            f"could not load {hub_id} ({config or 'default'}, split {split!r}) from the hub: {e}. "
            "Without network access, export the dataset to JSONL elsewhere and pass the file instead."
        ) from e
    records: list[Record] = []
    problems: list[Problem] = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        try:
            records.append(parser(dict(row)))
        except _Invalid as e:
            problems.append(Problem(f"{hub_id}[{split}]", i, e.field, e.message))
    if problems:
        raise DataError(problems)
    return records


def materialize_hub_tldr(out_dir: str | Path, splits: tuple[str, ...] = ("train", "validation")) -> Path:
    """Download the filtered TL;DR posts from the hub once into ``out_dir/{train,valid}.jsonl`` (the layout every
    stage reads). Needs network and the 'hub' extra; files already there are kept."""
    out = Path(out_dir)
    for split in splits:
        path = out / f"{'valid' if split == 'validation' else split}.jsonl"
        if not path.is_file():
            write_jsonl(path, load_hub("tldr", split))
    return out
