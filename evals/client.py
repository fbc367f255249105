"""An httpx client for a running ``prefsum serve``: the evals' Summarizer and Scorer over HTTP, and the labeling
queue the human judge uses.

- ``POST /v1/summarize`` ``{"inputs": [ITEM, ...], "max_new_tokens", "temperature", "top_p", "n", "seed", "policy"}``
  -> ``{"model", "results": [{"summaries": [{"text", "tokens", "finish_reason", "score"}]}]}``
- ``POST /v1/score`` ``{"input": ITEM, "summaries": [...], "reward_model"}`` -> ``{"model", "scores", "preference"}``
- ``GET /v1/models``; admin: ``POST /v1/label/tasks`` ``{"tasks": [...]}`` -> ``{"ids"}``, ``GET /v1/label/export``
  (public comparisons JSONL)

Requests are split to the service's per-request limits (64 items per summarize call, 16 summaries per score call,
1,000 label tasks per call). A busy service (503 with Retry-After) is retried a few times; an unreachable one is a
:class:`ServiceUnavailable` that says how to start one; any other error names the route, the status and the
service's own message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .protocols import Completion, Item

SUMMARIZE_BATCH = 64
SCORE_BATCH = 16
TASKS_BATCH = 1_000
RETRIES_503 = 5


class ServiceError(RuntimeError):
    """The service answered with an error; the message has the route, the status and the service's detail."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ServiceUnavailable(ServiceError):
    """Nothing answers at the URL."""


class ServiceClient:
    """One connection pool to a service. ``token``: the admin token (label tasks, export, eval jobs)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 300.0, transport=None):
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--server {base_url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000")
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)
        self._has_token = token is not None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport

    def request(self, method: str, path: str, *, json_body: Any = None, params: Mapping[str, Any] | None = None):
        import httpx

        for attempt in range(RETRIES_503 + 1):
            try:
                resp = self._http.request(method, path, json=json_body, params=params)
            except httpx.TransportError as e:
                raise ServiceUnavailable(
                    f"no prefsum service answers at {self.base_url} ({type(e).__name__}: {e}); start one with "
                    "`prefsum serve --bundles DIR` or check --server"
                ) from e
            if resp.status_code == 503 and attempt < RETRIES_503:
                try:
                    wait = float(resp.headers.get("Retry-After", "1"))
                except ValueError:
                    wait = 1.0
                time.sleep(min(max(wait, 0.1), 30.0))
                continue
            if resp.status_code >= 400:
                try:
                    detail = resp.json().get("detail", resp.text)
                except (ValueError, AttributeError):
                    detail = resp.text
                hint = ""
                if resp.status_code in (401, 403):
                    hint = " (pass the service's admin token with --token or PREFSUM_ADMIN_TOKEN)"
                raise ServiceError(
                    f"{method} {self.base_url}{path} answered {resp.status_code}: {str(detail)[:500]}{hint}",
                    resp.status_code,
                )
            return resp
        raise ServiceError(f"{method} {self.base_url}{path}: still busy (503) after {RETRIES_503} retries", 503)

    # -- models

    def models(self) -> list[dict[str, Any]]:
        """The loaded bundles: ``[{"name", "kind", "default", "manifest"}, ...]``."""
        return list(self.request("GET", "/v1/models").json().get("models", []))

    def names(self, kind: str) -> list[str]:
        return [m["name"] for m in self.models() if m.get("kind") == kind]

    def summarizer(self, policy: str | None = None) -> RemoteSummarizer:
        return RemoteSummarizer(self, policy)

    def scorer(self, reward_model: str | None = None) -> RemoteScorer:
        return RemoteScorer(self, reward_model)

    # -- labeling queue (admin)

    def queue_label_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Queue comparison pairs (``{"info", "summaries", "batch", "split"}``); returns the task ids."""
        ids: list[int] = []
        for start in range(0, len(tasks), TASKS_BATCH):
            body = {"tasks": [dict(t) for t in tasks[start : start + TASKS_BATCH]]}
            ids += self.request("POST", "/v1/label/tasks", json_body=body).json()["ids"]
        return ids

    def export_labels(self) -> list[dict[str, Any]]:
        """Every answered task, as public-format comparison records."""
        text = self.request("GET", "/v1/label/export", params={"format": "comparisons"}).text
        return [json.loads(line) for line in text.splitlines() if line.strip()]


class RemoteSummarizer:
    """A policy on the service; satisfies :class:`evals.protocols.Summarizer`."""

    def __init__(self, client: ServiceClient, policy: str | None):
        self.client = client
        self.policy = policy
        self.name = policy or "default"

    def summarize(
        self,
        items: Sequence[Item],
        *,
        max_new_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        n: int = 1,
        seed: int | None = None,
    ) -> list[list[Completion]]:
        out: list[list[Completion]] = []
        for start in range(0, len(items), SUMMARIZE_BATCH):
            chunk = [dict(i) for i in items[start : start + SUMMARIZE_BATCH]]
            body: dict[str, Any] = {"inputs": chunk, "temperature": temperature, "top_p": top_p, "n": n}
            if max_new_tokens is not None:
                body["max_new_tokens"] = max_new_tokens
            if seed is not None:
                body["seed"] = seed
            if self.policy is not None:
                body["policy"] = self.policy
            results = self.client.request("POST", "/v1/summarize", json_body=body).json()["results"]
            if len(results) != len(chunk):
                raise ServiceError(f"/v1/summarize returned {len(results)} results for {len(chunk)} inputs")
            for r in results:
                out.append(
                    [
                        Completion(s["text"], int(s["tokens"]), s["finish_reason"], s.get("score"))
                        for s in r["summaries"]
                    ]
                )
        return out


class RemoteScorer:
    """A reward model on the service; satisfies :class:`evals.protocols.Scorer`."""

    def __init__(self, client: ServiceClient, reward_model: str | None):
        self.client = client
        self.reward_model = reward_model
        self.name = reward_model or "default"

    def score(self, pairs: Sequence[tuple[Item, str]]) -> list[float]:
        # One call per item (and per 16 summaries): group the pairs by item, keep the caller's order.
        groups: dict[str, tuple[Item, list[int]]] = {}
        for i, (item, _) in enumerate(pairs):
            key = json.dumps(dict(item), sort_keys=True)
            groups.setdefault(key, (item, []))[1].append(i)
        scores: list[float | None] = [None] * len(pairs)
        for item, idx in groups.values():
            for start in range(0, len(idx), SCORE_BATCH):
                part = idx[start : start + SCORE_BATCH]
                body: dict[str, Any] = {"input": dict(item), "summaries": [pairs[i][1] for i in part]}
                if self.reward_model is not None:
                    body["reward_model"] = self.reward_model
                got = self.client.request("POST", "/v1/score", json_body=body).json()["scores"]
                if len(got) != len(part):
                    raise ServiceError(f"/v1/score returned {len(got)} scores for {len(part)} summaries")
                for i, s in zip(part, got, strict=True):
                    scores[i] = float(s)
        return [float(s) for s in scores]  # type: ignore[arg-type]
