"""The Litestar app: ``create_app(settings)``.

A lifespan loads every bundle under ``settings.bundles`` once (verifying each file's sha256; a bad bundle stops
start-up with a message naming the file), builds the model registry with one micro-batcher per model, opens the
SQLite storage and starts the eval-job pool; all of it lives on ``app.state.service``. Controllers are thin: they
check what the schema cannot (shapes, budgets, tokens), then hand work to the batchers or the storage, both of which
keep blocking work off the event loop.

Routes (see docs/service.md): /health, /ready, /metrics, /v1/models, /v1/summarize, /v1/score, /v1/evals...,
/v1/labelers, /v1/label/..., /label (the labeling page), /schema (OpenAPI).
"""

from __future__ import annotations

import hmac
import logging
import math
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio.to_thread
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, JSONBody

from service import schemas as S
from service.errors import HANDLERS, ApiError, error_responses
from service.metrics import CONTENT_TYPE, MetricsMiddleware, ServiceMetrics
from service.registry import GenKey, ModelSlot, Registry
from service.settings import Settings, load_settings
from service.storage import Labeler, LabelTask, Storage

log = logging.getLogger("prefsum.service")
STATIC = Path(__file__).parent / "static"
T = TypeVar("T")
BEARER = [{"bearer": []}]


# ----------------------------------------------------------------------------------------------------- state


@dataclass
class ServiceState:
    settings: Settings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    registry: Registry | None = None
    storage: Storage | None = None
    evals: Any = None
    admin_token: str = ""
    admin_token_file: Path | None = None
    accepting: bool = False

    async def startup(self) -> None:
        from service.engine import load_bundles  # noqa: PLC0415
        from service.evaljobs import EvalJobs  # noqa: PLC0415

        s = self.settings
        self.storage = await anyio.to_thread.run_sync(Storage, s.db)
        self.admin_token, self.admin_token_file = await anyio.to_thread.run_sync(_admin_token, s)
        if self.admin_token_file is not None:
            log.warning("admin token: in %s (set PREFSUM_ADMIN_TOKEN to choose one)", self.admin_token_file)
        engines = await anyio.to_thread.run_sync(
            lambda: load_bundles(s.bundles, threads=s.threads, provider=s.provider)
        )
        if not engines:
            raise RuntimeError(
                f"no bundles in {s.bundles}: export checkpoints into it with `prefsum export --out {s.bundles}` "
                "(one folder per bundle, each with a manifest.json)"
            )
        self.registry = Registry(engines, s, self.metrics)
        await self.registry.start()
        self.evals = EvalJobs(s, self.storage, self.registry, self.metrics)
        await anyio.to_thread.run_sync(self.evals.start)
        self.accepting = True
        log.info(
            "ready: policies %s, reward models %s (defaults %s / %s); batching %s",
            list(self.registry.policies),
            list(self.registry.rewards),
            self.registry.default_policy,
            self.registry.default_reward,
            f"on (max {s.max_batch}, wait {s.max_wait_ms} ms)" if s.batching else "off",
        )

    async def shutdown(self) -> None:
        self.accepting = False
        if self.evals is not None:
            self.evals.stop()
        if self.registry is not None:
            await self.registry.stop()
        if self.storage is not None:
            self.storage.close()


def _admin_token(settings: Settings) -> tuple[str, Path | None]:
    """The admin token: the setting, or one generated once and kept beside the database (mode 0600)."""
    if settings.admin_token:
        return settings.admin_token, None
    path = Path(settings.db + ".admin-token")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        from service.storage import new_token  # noqa: PLC0415

        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".admin-token.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(new_token() + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # atomic, and loses cleanly to a concurrent worker that got there first
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise RuntimeError(f"{path} is empty; delete it (a new admin token is made) or set PREFSUM_ADMIN_TOKEN")
    return token, path


def state_of(request: Request) -> ServiceState:
    return request.app.state.service


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(lambda: fn(*args))


def _registry(st: ServiceState) -> Registry:
    if st.registry is None or not st.accepting:
        raise ApiError(503, "the service is starting or stopping; retry shortly", None, {"Retry-After": "2"})
    return st.registry


# ----------------------------------------------------------------------------------------------------- auth


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(401, "missing token: send the header 'Authorization: Bearer TOKEN'", "Authorization")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "malformed Authorization header; expected 'Bearer TOKEN'", "Authorization")
    return token.strip()


def _is_admin(st: ServiceState, token: str) -> bool:
    return hmac.compare_digest(token.encode(), st.admin_token.encode())


async def require_admin(request: Request) -> None:
    st = state_of(request)
    token = _bearer(request)
    if _is_admin(st, token):
        return
    if await in_thread(st.storage.labeler_by_token, token) is not None:
        raise ApiError(403, "this needs the admin token; a labeler token can only label", "Authorization")
    raise ApiError(401, "unknown token", "Authorization")


async def require_labeler(request: Request) -> Labeler:
    st = state_of(request)
    token = _bearer(request)
    if _is_admin(st, token):
        raise ApiError(
            403,
            "the admin token has no label tasks; use a labeler's token (POST /v1/labelers creates one)",
            "Authorization",
        )
    labeler = await in_thread(st.storage.labeler_by_token, token)
    if labeler is None:
        raise ApiError(401, "unknown token; ask the admin for your labeler token", "Authorization")
    return labeler


# ----------------------------------------------------------------------------------------------------- health


@get("/health", summary="Liveness: the process answers", tags=["ops"])
async def health() -> S.HealthResponse:
    return S.HealthResponse(status="ok")


@get(
    "/ready",
    summary="Readiness: bundles loaded, batchers and eval pool running, database reachable",
    tags=["ops"],
    responses=error_responses(503),
)
async def ready(request: Request) -> Response[S.ReadyResponse]:
    st = state_of(request)
    checks = {
        "bundles": st.registry is not None and bool(st.registry.slots()),
        "batchers": st.registry is not None and st.registry.running,
        "evals": st.evals is not None and st.evals.running,
        "accepting": st.accepting,
    }
    try:
        checks["database"] = st.storage is not None and await in_thread(st.storage.ping)
    except Exception:  # a broken database is "not ready", not a crash
        checks["database"] = False
    ok = all(checks.values())
    models = [s.name for s in st.registry.slots()] if st.registry else []
    return Response(S.ReadyResponse(ready=ok, checks=checks, models=models), status_code=200 if ok else 503)


@get("/metrics", summary="Prometheus metrics (text format 0.0.4)", tags=["ops"], media_type=CONTENT_TYPE)
async def metrics(request: Request) -> str:
    return state_of(request).metrics.render()


# ----------------------------------------------------------------------------------------------------- models


@get("/v1/models", summary="Loaded bundles and their manifests", tags=["models"], responses=error_responses(503))
async def models(request: Request) -> S.ModelsResponse:
    reg = _registry(state_of(request))
    out = [
        S.ModelOut(
            name=slot.name,
            kind=slot.kind,
            default=slot.name in (reg.default_policy, reg.default_reward),
            manifest=slot.manifest.to_dict(),
        )
        for slot in reg.slots()
    ]
    return S.ModelsResponse(models=out, default_policy=reg.default_policy, default_reward=reg.default_reward)


# ----------------------------------------------------------------------------------------------------- summarize


def api_item(item: S.Item, where: str) -> dict[str, str]:
    """The engine item for an API item: exactly one of the two shapes, non-empty where it matters."""
    post_fields = {"subreddit": item.subreddit, "title": item.title, "post": item.post}
    given = [k for k, v in post_fields.items() if v is not None]
    if item.text is not None:
        if given:
            raise ApiError(
                422,
                f"{where} has both text and {', '.join(given)}; give either text (a news article) or "
                "subreddit/title/post (a TL;DR post)",
                f"{where}.text",
            )
        if not item.text.strip():
            raise ApiError(422, f"{where}.text is empty; give the article text", f"{where}.text")
        return {"text": item.text}
    missing = [k for k, v in post_fields.items() if v is None]
    if missing:
        raise ApiError(
            422,
            f"{where} is missing {', '.join(missing)}; give subreddit, title and post (a TL;DR post) or text "
            "(a news article)",
            f"{where}.{missing[0]}",
        )
    for k in ("subreddit", "post"):
        if not post_fields[k].strip():
            raise ApiError(422, f"{where}.{k} is empty", f"{where}.{k}")
    return {k: str(v) for k, v in post_fields.items()}


def check_fits(slot: ModelSlot, n_items: int, field_name: str) -> None:
    """A request larger than the whole queue could never be accepted: that is the request's fault (422), not 503."""
    if n_items > slot.batcher.max_queue:
        raise ApiError(
            422,
            f"{n_items} items is more than this server queues for one model ({slot.batcher.max_queue}); "
            "split the request",
            field_name,
        )


async def check_queries(slot: ModelSlot, items: list[dict[str, str]], where: Callable[[int], str]) -> None:
    """Format and truncate each item's query now (not inside a shared batch), so a bad item fails only its own
    request: e.g. a title that alone overflows the query budget (422)."""
    from service.engine import EngineInputError  # noqa: PLC0415
    from training.task import QueryTooLong  # noqa: PLC0415

    def check() -> None:
        for i, item in enumerate(items):
            try:
                slot.engine.encode_queries([item])
            except QueryTooLong as e:
                field_name = f"{where(i)}.title" if "title" in item else f"{where(i)}.text"
                raise ApiError(422, f"{where(i)}: {e}", field_name) from None
            except EngineInputError as e:
                message = str(e).replace("items[0]", where(i), 1)
                head = re.match(r"[\w\[\].]+", message)  # the engine's messages start with the field's path
                field_name = head.group(0) if head and head.group(0).startswith(where(i)) else where(i)
                raise ApiError(422, message, field_name) from None

    await anyio.to_thread.run_sync(check)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@post(
    "/v1/summarize",
    status_code=200,
    summary="Summaries of posts or articles by a policy (greedy, sampled, or best-of-N with a reward model)",
    tags=["models"],
    responses=error_responses(404, 413, 422, 503),
)
async def summarize(request: Request, data: JSONBody[S.SummarizeRequest]) -> S.SummarizeResponse:
    reg = _registry(state_of(request))
    policy = reg.policy(data.policy)
    budget = policy.manifest.max_response_tokens
    if data.max_new_tokens is not None and data.max_new_tokens > budget:
        raise ApiError(
            422,
            f"max_new_tokens {data.max_new_tokens} is over policy {policy.name!r}'s response budget ({budget}); "
            "leave it out to use the budget",
            "max_new_tokens",
        )
    if data.best_of > 1 and data.temperature == 0:
        raise ApiError(422, "best_of > 1 needs sampling: set temperature > 0 (e.g. 0.7)", "temperature")
    if data.best_of > 1 and data.n > 1:
        raise ApiError(422, "best_of > 1 returns one summary per input; leave n at 1", "n")
    reward = reg.reward(data.reward_model) if (data.best_of > 1 or data.return_scores) else None
    items = [api_item(x, f"inputs[{i}]") for i, x in enumerate(data.inputs)]
    check_fits(policy, len(items), "inputs")
    if reward is not None:
        check_fits(reward, len(items) * data.n, "inputs")
    await check_queries(policy, items, lambda i: f"inputs[{i}]")
    alone = policy.batcher.unique_key() if (data.seed is not None and data.temperature > 0) else 0
    key = GenKey(
        max_new_tokens=data.max_new_tokens,
        temperature=float(data.temperature),
        top_p=float(data.top_p),
        n=data.n,
        best_of=data.best_of,
        reward=reward.name if (reward and data.best_of > 1) else None,
        seed=data.seed if data.temperature > 0 else None,
        alone=alone,
    )
    rows = await policy.batcher.submit(key, items)
    scores: list[float | None] = [c.score for row in rows for c in row]
    if data.return_scores and data.best_of == 1:
        pairs = [(item, c.text) for item, row in zip(items, rows, strict=True) for c in row]
        scores = list(await reward.batcher.submit(reward.name, pairs))
    it = iter(scores)
    results = [
        S.ResultOut(
            summaries=[
                S.SummaryOut(text=c.text, tokens=c.tokens, finish_reason=c.finish_reason, score=next(it)) for c in row
            ]
        )
        for row in rows
    ]
    return S.SummarizeResponse(model=policy.name, results=results, reward_model=reward.name if reward else None)


@post(
    "/v1/score",
    status_code=200,
    summary="Reward-model scores of summaries of one post (references average 0)",
    tags=["models"],
    responses=error_responses(404, 413, 422, 503),
)
async def score(request: Request, data: JSONBody[S.ScoreRequest]) -> S.ScoreResponse:
    from training.task import clean_summary  # noqa: PLC0415

    reg = _registry(state_of(request))
    reward = reg.reward(data.reward_model)
    item = api_item(data.input, "input")
    texts = []
    for i, s in enumerate(data.summaries):
        text = clean_summary(s)
        if not text:
            raise ApiError(422, f"summaries[{i}] is empty (only whitespace)", f"summaries[{i}]")
        texts.append(text)
    check_fits(reward, len(texts), "summaries")
    await check_queries(reward, [item], lambda i: "input")
    values = [float(v) for v in await reward.batcher.submit(reward.name, [(item, t) for t in texts])]
    pref = _sigmoid(values[0] - values[1]) if len(values) == 2 else None
    return S.ScoreResponse(model=reward.name, scores=values, preference=pref)


# ----------------------------------------------------------------------------------------------------- eval jobs


def _job(row: dict[str, Any], with_report: bool = True) -> S.EvalJobOut:
    return S.EvalJobOut(
        id=row["id"],
        status=row["status"],
        spec=row["spec"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        report=row["report"] if with_report else None,
    )


@post(
    "/v1/evals",
    status_code=202,
    summary="Queue an eval job (admin); answers 202 with its id",
    tags=["evals"],
    security=BEARER,
    responses=error_responses(401, 403, 404, 413, 422, 503),
)
async def create_eval(request: Request, data: JSONBody[S.EvalRequest]) -> S.EvalJobOut:
    await require_admin(request)
    st = state_of(request)
    _registry(st)
    job_id = await in_thread(st.evals.submit, msgspec.to_builtins(data))
    return _job(await in_thread(st.storage.eval_job, job_id))


@get(
    "/v1/evals",
    summary="Recent eval jobs (admin), newest first, without their reports",
    tags=["evals"],
    security=BEARER,
    responses=error_responses(401, 403),
)
async def list_evals(request: Request) -> S.EvalJobsResponse:
    await require_admin(request)
    rows = await in_thread(state_of(request).storage.list_eval_jobs)
    return S.EvalJobsResponse(jobs=[_job(r, with_report=False) for r in rows])


@get(
    "/v1/evals/{job_id:str}",
    summary="An eval job's status (and its report once done)",
    tags=["evals"],
    security=BEARER,
    responses=error_responses(401, 403, 404),
)
async def get_eval(request: Request, job_id: FromPath[str]) -> S.EvalJobOut:
    await require_admin(request)
    return _job(await in_thread(state_of(request).storage.eval_job, job_id))


@get(
    "/v1/evals/{job_id:str}/report",
    summary="A finished eval job's report (report.json); 409 while it runs or if it failed",
    tags=["evals"],
    security=BEARER,
    responses=error_responses(401, 403, 404, 409),
)
async def get_eval_report(request: Request, job_id: FromPath[str]) -> dict[str, Any]:
    await require_admin(request)
    job = await in_thread(state_of(request).storage.eval_job, job_id)
    if job["status"] != "done":
        extra = f": {job['error']}" if job["error"] else f"; poll GET /v1/evals/{job_id}"
        raise ApiError(409, f"eval job {job_id} is {job['status']}{extra}", "job_id")
    return job["report"] or {}


@get(
    "/v1/evals/{job_id:str}/files/{name:str}",
    summary="A file of a finished eval job's report (report.html, report.md, plots)",
    tags=["evals"],
    security=BEARER,
    responses=error_responses(401, 403, 404, 409),
    media_type="application/octet-stream",
)
async def get_eval_file(request: Request, job_id: FromPath[str], name: FromPath[str]) -> Response[bytes]:
    await require_admin(request)
    st = state_of(request)
    path = await in_thread(st.evals.report_file, job_id, name)
    types = {".html": "text/html", ".md": "text/markdown", ".png": "image/png", ".json": "application/json"}
    content = await in_thread(path.read_bytes)
    return Response(content, media_type=types.get(path.suffix, "application/octet-stream"))


# ----------------------------------------------------------------------------------------------------- labeling


def _progress(p) -> S.ProgressOut:
    return S.ProgressOut(done=p.done, total=p.total)


def _task_out(t: LabelTask) -> S.TaskOut:
    answer = None
    if t.answer is not None:
        answer = S.AnswerOut(**t.answer)
    return S.TaskOut(id=t.id, info=t.info, summaries=t.summaries, batch=t.batch, split=t.split, answer=answer)


@post(
    "/v1/labelers",
    status_code=200,
    summary="Create a labeler (admin); the answer holds its token, shown only once",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403, 409, 413, 422),
)
async def create_labeler(request: Request, data: JSONBody[S.LabelerCreate]) -> S.LabelerCreated:
    await require_admin(request)
    labeler, token = await in_thread(state_of(request).storage.create_labeler, data.name)
    return S.LabelerCreated(name=labeler.name, token=token)


@get(
    "/v1/labelers",
    summary="Labelers and their progress (admin)",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403),
)
async def list_labelers(request: Request) -> S.LabelersResponse:
    await require_admin(request)
    rows = await in_thread(state_of(request).storage.list_labelers)
    return S.LabelersResponse(labelers=[S.LabelerOut(name=lb.name, progress=_progress(p)) for lb, p in rows])


def _info(info: S.InfoIn, where: str) -> dict[str, Any]:
    """The public comparisons ``info``: a post (id, post, title, subreddit) or an article (id, article, site,
    title)."""
    if info.article is not None:
        if info.post is not None or info.subreddit is not None:
            raise ApiError(422, f"{where} has both article and post/subreddit; give one shape", f"{where}.article")
        if not info.article.strip():
            raise ApiError(422, f"{where}.article is empty", f"{where}.article")
        return {"id": info.id, "article": info.article, "site": info.site, "title": info.title}
    missing = [k for k in ("post", "subreddit") if getattr(info, k) is None]
    if missing:
        raise ApiError(
            422,
            f"{where} is missing {', '.join(missing)}; a post needs id, post, title, subreddit (an article: id, "
            "article, site, title)",
            f"{where}.{missing[0]}",
        )
    if info.site is not None:
        raise ApiError(422, f"{where}.site belongs to an article; a post has no site", f"{where}.site")
    for k in ("post", "subreddit"):
        if not getattr(info, k).strip():
            raise ApiError(422, f"{where}.{k} is empty", f"{where}.{k}")
    return {"id": info.id, "post": info.post, "title": info.title or "", "subreddit": info.subreddit}


@post(
    "/v1/label/tasks",
    status_code=200,
    summary="Queue comparison pairs for labelers (admin)",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403, 404, 413, 422),
)
async def create_tasks(request: Request, data: JSONBody[S.TasksCreate]) -> S.TasksCreated:
    await require_admin(request)
    st = state_of(request)
    names = [n for t in data.tasks for n in (t.labelers or [])]
    ids_by_name = await in_thread(st.storage.labeler_ids, names)
    rows = []
    for i, t in enumerate(data.tasks):
        where = f"tasks[{i}]"
        info = _info(t.info, f"{where}.info")
        summaries = []
        for j, s in enumerate(t.summaries):
            if not s.text.strip():
                raise ApiError(422, f"{where}.summaries[{j}].text is empty", f"{where}.summaries[{j}].text")
            summaries.append({"text": s.text, "policy": s.policy, "note": s.note})
        for labeler_id in [ids_by_name[n] for n in dict.fromkeys(t.labelers)] if t.labelers else [None]:
            rows.append(
                {"labeler_id": labeler_id, "info": info, "summaries": summaries, "batch": t.batch, "split": t.split}
            )
    return S.TasksCreated(ids=await in_thread(st.storage.add_tasks, rows))


@get(
    "/v1/label/me",
    summary="Who this labeler token belongs to, and its progress",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403),
)
async def label_me(request: Request) -> S.MeResponse:
    labeler = await require_labeler(request)
    p = await in_thread(state_of(request).storage.progress, labeler.id)
    return S.MeResponse(labeler=labeler.name, progress=_progress(p))


@get(
    "/v1/label/next",
    summary="The labeler's next unanswered task (null when done), with progress",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403),
)
async def label_next(request: Request) -> S.NextTaskResponse:
    labeler = await require_labeler(request)
    st = state_of(request)
    task = await in_thread(st.storage.next_task, labeler.id)
    p = await in_thread(st.storage.progress, labeler.id)
    return S.NextTaskResponse(labeler=labeler.name, task=_task_out(task) if task else None, progress=_progress(p))


@get(
    "/v1/label/export",
    summary="Every answer in the public comparisons (or axis-evals) JSONL format (admin)",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403, 422),
    media_type="application/x-ndjson",
)
async def label_export(
    request: Request, format: FromQuery[Literal["comparisons", "axis"]] = "comparisons"
) -> Response[str]:
    await require_admin(request)
    tasks = await in_thread(lambda: list(state_of(request).storage.answered_tasks()))
    lines = []
    for t in tasks:
        for rec in export_records(t, format):
            lines.append(msgspec.json.encode(rec).decode())
    return Response("".join(line + "\n" for line in lines), media_type="application/x-ndjson")


def export_records(t: LabelTask, fmt: str) -> list[dict[str, Any]]:
    """Public-format records for one answered task: one comparison, or one axis eval per rated summary."""
    a = t.answer or {}
    worker = t.labeler or "unknown"
    if fmt == "comparisons":
        extra = {"confidence": a.get("confidence")}
        if a.get("note"):
            extra["note"] = a["note"]
        return [
            {
                "info": t.info,
                "summaries": t.summaries,
                "choice": a.get("choice"),
                "worker": worker,
                "batch": t.batch,
                "split": t.split,
                "extra": extra,
            }
        ]
    out = []
    for summary, axes in zip(t.summaries, a.get("axes") or [None, None], strict=True):
        if axes and any(v is not None for v in axes.values()):
            full = {k: axes.get(k) for k in ("overall", "accuracy", "coverage", "coherence")}
            out.append(
                {
                    "info": t.info,
                    "split": t.split,
                    "summary": dict(summary) | {"axes": full},
                    "worker": worker,
                    "batch": t.batch,
                }
            )
    return out


@get(
    "/v1/label/{task_id:int}",
    summary="One of this labeler's tasks (with its answer, if given)",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403, 404),
)
async def label_get(request: Request, task_id: FromPath[int]) -> S.TaskOut:
    labeler = await require_labeler(request)
    return _task_out(await in_thread(state_of(request).storage.get_task, task_id, labeler.id))


@post(
    "/v1/label/{task_id:int}",
    status_code=200,
    summary="Answer one of this labeler's tasks: choice, confidence 1-9, optional 1-7 axes and note",
    tags=["labeling"],
    security=BEARER,
    responses=error_responses(401, 403, 404, 409, 413, 422),
)
async def label_answer(request: Request, task_id: FromPath[int], data: JSONBody[S.AnswerIn]) -> S.AnswerAck:
    labeler = await require_labeler(request)
    st = state_of(request)
    axes = None
    if data.axes is not None:
        axes = [msgspec.to_builtins(a) if a is not None else None for a in data.axes]
    note = data.note.strip() if data.note and data.note.strip() else None
    await in_thread(
        lambda: st.storage.answer(
            task_id, labeler.id, choice=data.choice, confidence=data.confidence, axes=axes, note=note
        )
    )
    st.metrics.answers.inc()
    p = await in_thread(st.storage.progress, labeler.id)
    return S.AnswerAck(task_id=task_id, progress=_progress(p))


@get("/label", summary="The labeling page (HTML)", tags=["labeling"], media_type="text/html", include_in_schema=False)
async def label_page() -> Response[bytes]:
    return Response((STATIC / "label.html").read_bytes(), media_type="text/html; charset=utf-8")


# ----------------------------------------------------------------------------------------------------- app

ROUTES = [
    health,
    ready,
    metrics,
    models,
    summarize,
    score,
    create_eval,
    list_evals,
    get_eval,
    get_eval_report,
    get_eval_file,
    create_labeler,
    list_labelers,
    create_tasks,
    label_me,
    label_next,
    label_export,
    label_get,
    label_answer,
    label_page,
]


def create_app(settings: Settings | None = None) -> Litestar:
    """The service for ``settings`` (default: from PREFSUM_* variables). Bundles load when the app starts."""
    from prefsum import __version__  # noqa: PLC0415

    settings = settings or load_settings()
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await state.startup()
        try:
            yield
        finally:
            await state.shutdown()

    app = Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        exception_handlers=HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="prefsum",
            version=__version__,
            description="Summaries, reward scores, eval jobs and labeling for prefsum bundles. Errors answer "
            "{status_code, detail, field, errors}.",
            path="/schema",
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
        ),
        debug=False,
    )
    app.state.service = state
    app.asgi_handler = MetricsMiddleware(app.asgi_handler, state.metrics)
    _document_shapes(app)
    return app


def _document_shapes(app: Litestar) -> None:
    """Say in the OpenAPI document what the routes enforce about the two-shaped objects: an ITEM is a post
    {subreddit, title, post} or an article {text}; a comparison's info is a post {id, post, title, subreddit} or an
    article {id, article, site, title}. (msgspec decodes each as one Struct with optional fields; ``api_item`` and
    ``_info`` then refuse any other combination with 422.)"""
    from litestar.openapi.spec import OpenAPIType, Schema  # noqa: PLC0415

    def text(max_length: int, *, nonblank: bool = True) -> Schema:
        return Schema(type=OpenAPIType.STRING, max_length=max_length, pattern=r"\S" if nonblank else None)

    def obj(title: str, props: dict[str, Schema], required: list[str], nullable: tuple[str, ...] = ()) -> Schema:
        for name in nullable:
            props[name] = Schema(one_of=[props[name], Schema(type=OpenAPIType.NULL)])
        return Schema(
            type=OpenAPIType.OBJECT, title=title, properties=props, required=required, additional_properties=False
        )

    schemas = app.openapi_schema.components.schemas
    # Request bodies refuse unknown fields (422 naming the field): say so.
    for name, cls in vars(S).items():
        if isinstance(cls, type) and issubclass(cls, S.Struct) and name in schemas:
            schemas[name].additional_properties = False
    # Litestar drops the constraints of list items; restore the ones the routes enforce.
    name = Schema(type=OpenAPIType.STRING, min_length=1, max_length=64, pattern=S.NAME_PATTERN)
    summary = Schema(type=OpenAPIType.STRING, max_length=S.MAX_SUMMARY_CHARS, pattern=S.NONBLANK)
    for struct, prop, item in (
        ("ScoreRequest", "summaries", summary),
        ("TaskIn", "labelers", name),
        ("EvalRequest", "policies", name),
    ):
        schema = schemas[struct].properties[prop]
        for option in [schema, *(schema.one_of or [])]:
            if option.type == OpenAPIType.ARRAY:
                option.items = item
    schemas["Item"] = Schema(
        title="Item",
        description="A TL;DR post {subreddit, title, post} or a news article {text}. Posts over the query budget "
        "are cut at their last newline (the paper's rule).",
        one_of=[
            obj(
                "TL;DR post",
                {"subreddit": text(200), "title": text(2_000, nonblank=False), "post": text(S.MAX_TEXT_CHARS)},
                ["post", "subreddit", "title"],
            ),
            obj("News article", {"text": text(S.MAX_TEXT_CHARS)}, ["text"]),
        ],
    )
    ident = Schema(type=OpenAPIType.STRING, min_length=1, max_length=200)
    schemas["InfoIn"] = Schema(
        title="InfoIn",
        description="What the summaries summarize, as in the public comparisons format: a post {id, post, title, "
        "subreddit} or a news article {id, article, site, title}.",
        one_of=[
            obj(
                "Post",
                {
                    "id": ident,
                    "post": text(S.MAX_TEXT_CHARS),
                    "title": text(2_000, nonblank=False),
                    "subreddit": text(200),
                },
                ["id", "post", "subreddit"],
                nullable=("title",),
            ),
            obj(
                "Article",
                {
                    "id": ident,
                    "article": text(S.MAX_TEXT_CHARS),
                    "site": text(200, nonblank=False),
                    "title": text(2_000, nonblank=False),
                },
                ["article", "id"],
                nullable=("site", "title"),
            ),
        ],
    )


def app_from_env() -> Litestar:
    """uvicorn factory (``service.app:app_from_env``): settings from PREFSUM_* variables (what `prefsum serve`
    passes to each worker process)."""
    return create_app(load_settings())
