"""The loaded models: one slot per bundle (engine, manifest, a lock, its micro-batcher), and the defaults.

Each engine is used by one thread at a time (its lock): the batcher's worker thread, an eval job, or a best-of-N call
that borrows the reward model. Locks are always taken policy first, then reward, so two of them never wait on each
other in a cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.batching import MicroBatcher
from service.errors import ApiError
from service.metrics import ServiceMetrics
from service.settings import Settings


@dataclass(frozen=True)
class GenKey:
    """Generation settings shared by every request in one policy batch."""

    max_new_tokens: int | None
    temperature: float
    top_p: float
    n: int
    best_of: int
    reward: str | None
    seed: int | None
    alone: int = 0  # != 0: a key no other request has (seeded sampling runs in a call of its own)


@dataclass
class ModelSlot:
    name: str
    kind: str
    engine: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    batcher: MicroBatcher | None = None

    @property
    def manifest(self):
        return self.engine.manifest


class LockedPolicy:
    """A policy engine behind its lock: what eval jobs use (``evals.protocols.Summarizer``)."""

    def __init__(self, slot: ModelSlot):
        self.slot, self.name = slot, slot.name

    def summarize(self, items, *, max_new_tokens=None, temperature=0.0, top_p=1.0, n=1, seed=None):
        with self.slot.lock:
            return self.slot.engine.summarize(
                items, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed
            )


class LockedReward:
    """A reward engine behind its lock (``evals.protocols.Scorer``)."""

    def __init__(self, slot: ModelSlot):
        self.slot, self.name = slot, slot.name

    def score(self, pairs):
        with self.slot.lock:
            return self.slot.engine.score(pairs)


class Registry:
    def __init__(self, engines: Mapping[str, Any], settings: Settings, metrics: ServiceMetrics):
        self.settings = settings
        self.metrics = metrics
        self.policies: dict[str, ModelSlot] = {}
        self.rewards: dict[str, ModelSlot] = {}
        for name, engine in sorted(engines.items()):
            slot = ModelSlot(name, engine.manifest.kind, engine)
            (self.policies if slot.kind == "policy" else self.rewards)[name] = slot
        self.default_policy = self._default(settings.default_policy, self.policies, "policy", "default_policy")
        self.default_reward = self._default(settings.default_reward, self.rewards, "reward", "default_reward")
        for slot in self.slots():
            run = self._run_policy(slot) if slot.kind == "policy" else self._run_reward(slot)
            slot.batcher = MicroBatcher(
                run,
                name=slot.name,
                max_batch=settings.effective_max_batch,
                max_wait_s=settings.max_wait_ms / 1000.0 if settings.batching else 0.0,
                max_queue=settings.max_queue,
                retry_after_s=settings.retry_after_s,
                on_batch=self._on_batch(slot.name),
            )
            batcher = slot.batcher
            metrics.queue_depth.set_function(lambda b=batcher: b.depth, model=slot.name)

    @staticmethod
    def _default(wanted: str | None, slots: Mapping[str, ModelSlot], kind: str, setting: str) -> str | None:
        if wanted is None:
            return next(iter(slots), None)
        if wanted not in slots:
            have = ", ".join(slots) or "none"
            raise ValueError(f"{setting} {wanted!r} is not a loaded {kind} bundle (loaded {kind} bundles: {have})")
        return wanted

    def slots(self) -> list[ModelSlot]:
        return [*self.policies.values(), *self.rewards.values()]

    def _on_batch(self, name: str):
        def hook(n_items: int, n_requests: int, wait_s: float) -> None:
            self.metrics.batch_size.observe(n_items, model=name)
            self.metrics.batch_requests.observe(n_requests, model=name)
            self.metrics.queue_wait.observe(wait_s, model=name)

        return hook

    async def start(self) -> None:
        for slot in self.slots():
            await slot.batcher.start()

    async def stop(self) -> None:
        for slot in self.slots():
            await slot.batcher.stop()

    @property
    def running(self) -> bool:
        return all(slot.batcher.running for slot in self.slots())

    # ---------------------------------------------------------------------------------------------- lookups

    def policy(self, name: str | None, field: str = "policy") -> ModelSlot:
        name = name or self.default_policy
        if name is None:
            raise ApiError(404, "no policy bundle is loaded; export one with `prefsum export` and restart", field)
        if name not in self.policies:
            hint = " (it is a reward model)" if name in self.rewards else ""
            raise ApiError(
                404, f"unknown policy {name!r}{hint}; loaded policies: {', '.join(self.policies) or 'none'}", field
            )
        return self.policies[name]

    def reward(self, name: str | None, field: str = "reward_model") -> ModelSlot:
        name = name or self.default_reward
        if name is None:
            raise ApiError(404, "no reward model bundle is loaded; export one with `prefsum export` and restart", field)
        if name not in self.rewards:
            hint = " (it is a policy)" if name in self.policies else ""
            raise ApiError(
                404,
                f"unknown reward model {name!r}{hint}; loaded reward models: {', '.join(self.rewards) or 'none'}",
                field,
            )
        return self.rewards[name]

    # ---------------------------------------------------------------------------------------------- batch runs

    def _run_policy(self, slot: ModelSlot):
        from service.engine import best_of_n  # noqa: PLC0415

        def run(key: Hashable, items: list[Any]) -> Sequence[Any]:
            assert isinstance(key, GenKey)
            if key.best_of > 1:
                reward = self.rewards[key.reward]
                with slot.lock, reward.lock:
                    kept = best_of_n(
                        slot.engine,
                        reward.engine,
                        items,
                        n=key.best_of,
                        temperature=key.temperature,
                        top_p=key.top_p,
                        max_new_tokens=key.max_new_tokens,
                        seed=key.seed,
                    )
                out = [[c] for c in kept]
            else:
                with slot.lock:
                    out = slot.engine.summarize(
                        items,
                        max_new_tokens=key.max_new_tokens,
                        temperature=key.temperature,
                        top_p=key.top_p,
                        n=key.n,
                        seed=key.seed,
                    )
            tokens = sum(c.tokens for row in out for c in row)
            self.metrics.tokens.inc(tokens, model=slot.name)
            self.metrics.summaries.inc(sum(len(row) for row in out), model=slot.name)
            return out

        return run

    @staticmethod
    def _run_reward(slot: ModelSlot):
        def run(key: Hashable, pairs: list[Any]) -> Sequence[float]:
            with slot.lock:
                return slot.engine.score(pairs)

        return run
