"""Request and response bodies of the HTTP API (msgspec Structs; Litestar turns them into the OpenAPI schema).

Static limits live here (they are part of the API contract and show in ``/schema``); limits that depend on the
loaded bundles (the response-token budget) are checked in the routes. Unknown fields are refused (422), so a typo
such as ``"temprature"`` is an error, not a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

MAX_TEXT_CHARS = 50_000  # per text field of an input (posts are then truncated to the query budget by task rules)
MAX_INPUTS = 64  # items per /v1/summarize request
MAX_N = 8  # summaries per item
MAX_BEST_OF = 16  # samples per kept summary
MAX_SAMPLES = 32  # n * best_of per item
MAX_SUMMARIES = 16  # summaries per /v1/score request
MAX_SUMMARY_CHARS = 4_000
MAX_NEW_TOKENS = 512
MAX_TASKS = 1_000  # label tasks per request
MAX_NOTE_CHARS = 2_000
NONBLANK = r"\S"  # msgspec patterns search: at least one non-whitespace character

Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NAME_PATTERN)]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Struct(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    pass


# ------------------------------------------------------------------------------------------------- errors


class FieldProblem(msgspec.Struct):
    field: str
    message: str


class ErrorBody(msgspec.Struct):
    """Every error answer: the HTTP status, what went wrong and how to fix it, and the offending field if any."""

    status_code: int
    detail: str
    field: str | None = None
    errors: list[FieldProblem] = []


# ------------------------------------------------------------------------------------------------- items


class Item(Struct):
    """One text to summarize: a TL;DR post ``{"subreddit", "title", "post"}`` or a news article ``{"text"}``.

    Exactly one of the two shapes; a post longer than the model's query budget is cut at its last newline (the
    paper's rule) until it fits."""

    subreddit: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    title: Annotated[str, msgspec.Meta(max_length=2_000)] | None = None
    post: Text | None = None
    text: Text | None = None


# ------------------------------------------------------------------------------------------------- summarize


class SummarizeRequest(Struct):
    inputs: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=MAX_INPUTS)]
    max_new_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_NEW_TOKENS)] | None = None
    """Default: the policy bundle's response budget (48 in the paper); larger than the budget is refused."""
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=5.0)] = 0.0
    """0 = greedy."""
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_N)] = 1
    best_of: Annotated[int, msgspec.Meta(ge=1, le=MAX_BEST_OF)] = 1
    """> 1: sample this many summaries per returned one and keep the reward model's pick (needs temperature > 0)."""
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None
    """Sampling seed; a seeded request runs in a model call of its own so its result does not depend on others."""
    policy: Name | None = None
    reward_model: Name | None = None
    """Reward model for best_of and return_scores (default: the service's default reward model)."""
    return_scores: bool = False


class SummaryOut(msgspec.Struct):
    text: str
    tokens: int
    finish_reason: Literal["eos", "length"]
    score: float | None = None


class ResultOut(msgspec.Struct):
    summaries: list[SummaryOut]


class SummarizeResponse(msgspec.Struct):
    model: str
    results: list[ResultOut]
    reward_model: str | None = None


# ------------------------------------------------------------------------------------------------- score


class ScoreRequest(Struct):
    input: Item
    summaries: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=MAX_SUMMARY_CHARS, pattern=NONBLANK)]],
        msgspec.Meta(min_length=1, max_length=MAX_SUMMARIES),
    ]
    reward_model: Name | None = None


class ScoreResponse(msgspec.Struct):
    model: str
    scores: list[float]
    preference: float | None = None
    """For exactly two summaries: the probability that the first is preferred, sigmoid(score[0] - score[1])."""


# ------------------------------------------------------------------------------------------------- models


class ModelOut(msgspec.Struct):
    name: str
    kind: Literal["policy", "reward"]
    default: bool
    manifest: dict[str, Any]


class ModelsResponse(msgspec.Struct):
    models: list[ModelOut]
    default_policy: str | None
    default_reward: str | None


class HealthResponse(msgspec.Struct):
    status: str


class ReadyResponse(msgspec.Struct):
    ready: bool
    checks: dict[str, bool]
    models: list[str]


# ------------------------------------------------------------------------------------------------- labeling


class LabelerCreate(Struct):
    name: Name


class LabelerCreated(msgspec.Struct):
    name: str
    token: str
    """Shown once; the service keeps only its hash."""


class ProgressOut(msgspec.Struct):
    done: int
    total: int


class LabelerOut(msgspec.Struct):
    name: str
    progress: ProgressOut


class LabelersResponse(msgspec.Struct):
    labelers: list[LabelerOut]


class InfoIn(Struct):
    """What the summaries summarize, in the public comparisons format: a post ``{"id", "post", "title",
    "subreddit"}`` or a news article ``{"id", "article", "site", "title"}``."""

    id: Ident
    post: Text | None = None
    title: Annotated[str, msgspec.Meta(max_length=2_000)] | None = None
    subreddit: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    article: Text | None = None
    site: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class SummaryIn(Struct):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SUMMARY_CHARS, pattern=NONBLANK)]
    policy: Ident
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_CHARS)] | None = None


class TaskIn(Struct):
    info: InfoIn
    summaries: Annotated[list[SummaryIn], msgspec.Meta(min_length=2, max_length=2)]
    labelers: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=32)] | None = None
    """One task per labeler named (the same pair to several labelers measures their agreement); when absent, one
    task in the shared pool, which the first labeler asking for work claims."""
    batch: Ident = "service"
    split: Literal["train", "valid1", "valid2"] = "train"


class TasksCreate(Struct):
    tasks: Annotated[list[TaskIn], msgspec.Meta(min_length=1, max_length=MAX_TASKS)]


class TasksCreated(msgspec.Struct):
    ids: list[int]


class AxesIn(Struct):
    """Likert ratings 1-7 of one summary (all optional)."""

    overall: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None
    accuracy: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None
    coverage: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None
    coherence: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None


class AnswerIn(Struct):
    choice: Annotated[int, msgspec.Meta(ge=0, le=1)]
    """Index of the preferred summary (0 = the first)."""
    confidence: Annotated[int, msgspec.Meta(ge=1, le=9)]
    """How sure, 1 (a guess) to 9 (certain)."""
    axes: Annotated[list[AxesIn | None], msgspec.Meta(min_length=2, max_length=2)] | None = None
    """Optional ratings of the two summaries, in order."""
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE_CHARS)] | None = None


class AnswerOut(msgspec.Struct):
    choice: int
    confidence: int
    axes: list[dict[str, int | None] | None] | None
    note: str | None
    answered_at: float


class TaskOut(msgspec.Struct):
    id: int
    info: dict[str, Any]
    summaries: list[dict[str, Any]]
    batch: str
    split: str
    answer: AnswerOut | None = None


class NextTaskResponse(msgspec.Struct):
    labeler: str
    task: TaskOut | None
    progress: ProgressOut


class AnswerAck(msgspec.Struct):
    task_id: int
    progress: ProgressOut


class MeResponse(msgspec.Struct):
    labeler: str
    progress: ProgressOut


# ------------------------------------------------------------------------------------------------- evals


class EvalRequest(Struct):
    dataset: Literal["tldr", "news"] = "tldr"
    policies: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=8)] | None = None
    """Policy names (default: every loaded policy)."""
    judge: Literal["sim", "rm"] = "sim"
    """sim: the offline world's simulated labelers (needs frames.jsonl in the data folder); rm: a reward model."""
    n: Annotated[int, msgspec.Meta(ge=1)] = 100
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    max_new_tokens: Annotated[int, msgspec.Meta(ge=1, le=MAX_NEW_TOKENS)] | None = None
    reward_model: Name | None = None


class EvalJobOut(msgspec.Struct):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    spec: dict[str, Any]
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    report: dict[str, Any] | None = None


class EvalJobsResponse(msgspec.Struct):
    jobs: list[EvalJobOut]
