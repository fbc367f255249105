"""Eval jobs: ``POST /v1/evals`` queues an evaluation of loaded policies; a bounded pool of background threads runs
it through ``evals.runner.run_eval`` and ``evals.report.build_report``; the job row in SQLite holds its status and,
when done, the report.

- Bounded: at most ``eval_workers`` jobs run at once and at most ``max_eval_jobs`` are queued or running (the POST
  answers 503 beyond that).
- Durable: a job acknowledged with 202 is in the database before the answer; a job that a stopped process left queued
  or running is taken over (and run from the start) by the next process that starts on the same database.
- Isolated from clients' paths: jobs read data only from the service's ``data_dir`` and write only under
  ``eval_dir/<job id>/``.
- Sharing the models: a job uses the same engines as the HTTP routes, each call under the engine's lock, so live
  requests and a job interleave call by call.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import traceback
from pathlib import Path
from typing import Any

from service.errors import ApiError
from service.metrics import ServiceMetrics
from service.registry import LockedPolicy, LockedReward, Registry
from service.settings import Settings
from service.storage import Storage, process_owner

log = logging.getLogger("prefsum.service.evals")


class EvalJobs:
    def __init__(self, settings: Settings, storage: Storage, registry: Registry, metrics: ServiceMetrics):
        self.settings, self.storage, self.registry, self.metrics = settings, storage, registry, metrics
        self.owner = process_owner()
        self.root = Path(settings.eval_dir)
        self._queue: queue.Queue | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> list[str]:
        """Start the workers and take over jobs a previous process left unfinished; returns their ids."""
        self._queue = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, args=(self._queue,), name=f"eval-job-{i}", daemon=True)
            for i in range(self.settings.eval_workers)
        ]
        for t in self._threads:
            t.start()
        resumed = self.storage.reclaim_eval_jobs(self.owner)
        for job_id in resumed:
            log.info("resuming eval job %s left unfinished by a previous process", job_id)
            self._queue.put(job_id)
        return resumed

    def stop(self) -> None:
        """Stop taking jobs. Queued jobs stay queued in the database, and a job still running is abandoned with the
        process (its threads are daemons, so a long job never holds up shutdown); the next start resumes both."""
        if self._queue is not None:
            for _ in self._threads:
                self._queue.put(None)
        self._queue = None
        self._threads = []

    @property
    def running(self) -> bool:
        return self._queue is not None and all(t.is_alive() for t in self._threads)

    def _work(self, jobs: queue.Queue) -> None:
        while (job_id := jobs.get()) is not None:
            self._run(job_id)

    # ------------------------------------------------------------------------------------------------ submit

    def build_spec(self, req: dict[str, Any]):
        """The EvalSpec for a request, checked now (unknown policy -> 404; bad data/judge -> 422) so that a job
        that is accepted can run."""
        from evals.runner import EvalInputError, EvalSpec, dataset_file, frames_path  # noqa: PLC0415

        policies = req.get("policies") or list(self.registry.policies)
        if not policies:
            raise ApiError(404, "no policy bundle is loaded; nothing to evaluate", "policies")
        for i, name in enumerate(policies):
            self.registry.policy(name, field=f"policies[{i}]")
        reward_name = None
        if req.get("judge") == "rm":
            reward_name = self.registry.reward(req.get("reward_model")).name
        elif req.get("reward_model") is not None:
            reward_name = self.registry.reward(req.get("reward_model")).name
        if req["n"] > self.settings.max_eval_n:
            raise ApiError(422, f"n is {req['n']}, above this service's limit of {self.settings.max_eval_n}", "n")
        try:
            spec = EvalSpec(
                dataset=req["dataset"],
                data_dir=self.settings.data_dir,
                policies=tuple(policies),
                judge=req["judge"],
                n=req["n"],
                seed=req["seed"],
                max_new_tokens=req.get("max_new_tokens"),
                reward_model=reward_name,
            )
            dataset_file(spec)
            if spec.judge == "sim":
                frames_path(spec)
        except EvalInputError as e:
            raise ApiError(422, str(e), "dataset") from None
        except ValueError as e:  # JudgeUnavailable and friends
            raise ApiError(422, str(e), "judge") from None
        for name in policies:
            budget = self.registry.policies[name].manifest.max_response_tokens
            if spec.max_new_tokens is not None and spec.max_new_tokens > budget:
                raise ApiError(
                    422,
                    f"max_new_tokens {spec.max_new_tokens} is over policy {name!r}'s response budget ({budget})",
                    "max_new_tokens",
                )
        return spec

    def submit(self, req: dict[str, Any]) -> str:
        spec = self.build_spec(req)
        if self._queue is None:
            raise ApiError(
                503, "eval jobs are not running (the service is starting or stopping)", None, {"Retry-After": "5"}
            )
        job_id = self.storage.create_eval_job(spec.as_json(), self.owner, self.settings.max_eval_jobs)
        if job_id is None:
            raise ApiError(
                503,
                f"{self.settings.max_eval_jobs} eval jobs are already queued or running; retry later",
                None,
                {"Retry-After": "30"},
            )
        self._queue.put(job_id)
        return job_id

    # ------------------------------------------------------------------------------------------------ run

    def _run(self, job_id: str) -> None:
        out = self.root / job_id
        if not self.storage.start_eval_job(job_id, self.owner, str(out)):
            return  # taken by another process, or no longer queued
        try:
            report = self._execute(self.storage.eval_job(job_id)["spec"], out)
        except Exception as e:  # a job's failure is the job's status, never the service's
            log.warning("eval job %s failed: %s", job_id, e)
            detail = f"{type(e).__name__}: {e}"
            if not isinstance(e, ValueError):
                detail += "\n" + "".join(traceback.format_exception(e)[-3:])
            self.storage.finish_eval_job(job_id, report=None, error=detail)
            self.metrics.eval_jobs.inc(status="failed")
            return
        self.storage.finish_eval_job(job_id, report=report, error=None)
        self.metrics.eval_jobs.inc(status="done")

    def _execute(self, spec_json: dict[str, Any], out: Path) -> dict[str, Any]:
        from evals.runner import EvalSpec, run_eval  # noqa: PLC0415

        fields = set(EvalSpec.__dataclass_fields__)
        spec = EvalSpec(**{k: (tuple(v) if k == "policies" else v) for k, v in spec_json.items() if k in fields})
        summarizers = {name: LockedPolicy(self.registry.policy(name)) for name in spec.policies}
        scorer = LockedReward(self.registry.reward(spec.reward_model)) if spec.reward_model else None
        run_dir = run_eval(spec, summarizers, out_dir=out / "run", scorer=scorer)
        try:
            from evals.report import build_report  # noqa: PLC0415
        except ImportError:
            # Without the report builder the job still records what it ran: the run summary(ies) in run_dir.
            return {
                "note": "evals.report is not available; this is the run summary only",
                "runs": [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(run_dir).glob("run-*.json"))],
            }
        return build_report(run_dir, out / "report")

    # ------------------------------------------------------------------------------------------------ files

    def report_file(self, job_id: str, name: str) -> Path:
        """A file the job's report wrote (report.html, PNGs, report.md), by plain file name only."""
        job = self.storage.eval_job(job_id)
        if job["status"] != "done" or not job["out_dir"]:
            raise ApiError(409, f"eval job {job_id} is {job['status']}; its files exist once it is done", "id")
        folder = (Path(job["out_dir"]) / "report").resolve()
        path = (folder / name).resolve()
        if path.parent != folder or not path.is_file():
            have = sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
            raise ApiError(404, f"eval job {job_id} has no report file {name!r}; it has: {', '.join(have) or 'none'}")
        return path
