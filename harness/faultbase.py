"""What every fault is: its spec, the context it acts in, the ``Fault`` base with its lifecycle, and
the registry ``FAULTS`` that each subclass with a ``type`` joins when its module is imported.

Each fault has one lifecycle: ``prepare`` (before the cohorts connect), ``start``, ``heal``, and
``cleanup``, which releases whatever the fault still holds however the run ended (healed or not, on
an error, a timeout or Ctrl-C): it cancels and awaits every task the fault started, closes every
client and socket it opened, and removes its toxics. Tasks are started with ``Fault.spawn``, so each
belongs to its fault."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import aiohttp

from harness.bite import Subject
from harness.clients import Cohort
from harness.dialects import Dialect
from harness.errors import HarnessError, ToxiproxyError
from harness.history import History
from harness.optiontypes import type_problem
from harness.target import Target
from harness.toxiproxy import Proxy, Toxiproxy

log = logging.getLogger(__name__)

T = TypeVar("T")

FAULTS: dict[str, type[Fault]] = {}


@dataclass(frozen=True)
class FaultSpec:
    """One fault of a scenario: its name, type (a key of ``FAULTS``), cohort and parameters."""

    name: str
    type: str
    cohort: str | None
    params: dict[str, Any]


@dataclass
class FaultContext:
    toxiproxy: Toxiproxy
    proxies: dict[str, Proxy]
    cohorts: dict[str, Cohort]
    target: Target
    history: History
    rng: random.Random
    session: aiohttp.ClientSession
    dialect: Dialect


class Fault:
    """Base: subclasses set ``type`` and ``defaults`` and override what they need."""

    type: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    needs_cohort: ClassVar[bool] = True
    needs_process: ClassVar[bool] = False  # acts on the target's process: not on an external target

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            if cls.type in FAULTS:
                raise TypeError(f"two faults of type {cls.type!r}: {FAULTS[cls.type].__name__}, {cls.__name__}")
            FAULTS[cls.type] = cls

    def __init__(self, spec: FaultSpec) -> None:
        problems = self.problems(spec)
        if problems:
            raise HarnessError(f"fault {spec.name!r} ({spec.type}): " + "; ".join(p for _, p in problems))
        self.spec = spec
        self.params = {**self.defaults, **spec.params}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.toxics: dict[str, Proxy] = {}  # added (or being added) and not yet removed, by name

    @classmethod
    def problems(cls, spec: FaultSpec) -> list[tuple[str, str]]:
        """What is wrong with ``spec`` for this fault, as (field, problem) pairs."""
        problems = []
        unknown = set(spec.params) - set(cls.defaults)
        if unknown:
            known = ", ".join(sorted(cls.defaults)) or "none"
            problems.append(("params", f"unknown params {sorted(unknown)}; known: {known}"))
        for name, value in spec.params.items():
            wrong = type_problem(value, cls.defaults.get(name))
            if wrong:
                problems.append((f"params.{name}", wrong))
        if cls.needs_cohort and spec.cohort is None:
            problems.append(("cohort", "needs a cohort"))
        return problems

    async def prepare(self, ctx: FaultContext) -> None:
        """Before the cohorts connect."""

    async def start(self, ctx: FaultContext) -> None:
        ctx.history.record("fault_start", fault=self.spec.name, type=self.type, cohort=self.spec.cohort,
                           params=self.params)  # fmt: skip
        await self.apply(ctx)

    async def settle(self, ctx: FaultContext) -> None:
        """Return once the fault has run its course: a fault that must bite first runs until it has
        (within its ceiling) and then for its hold; most faults at once."""

    async def heal(self, ctx: FaultContext) -> None:
        await self.undo(ctx)
        self.record_bite(ctx)
        ctx.history.record("fault_heal", fault=self.spec.name, type=self.type, cohort=self.spec.cohort)

    async def cleanup(self, ctx: FaultContext) -> None:
        """Release what the fault still holds; safe to call twice, after a heal, or without a start.
        A toxic whose proxy is already gone is no error."""
        await cancel_all(self.tasks)
        await self.release(ctx)
        for name in list(self.toxics):
            try:
                await self.remove_toxic(ctx, name)
            except ToxiproxyError as exc:
                log.debug("cleaning up fault %s: %s", self.spec.name, exc)

    async def apply(self, ctx: FaultContext) -> None:
        raise NotImplementedError

    def record_bite(self, ctx: FaultContext) -> None:
        """On heal, for faults judged from the History: the ``fault_bite`` record (see harness.bite)."""

    def subject(self) -> Subject:
        return Subject(self.spec.name, self.type, self.spec.cohort)

    async def undo(self, ctx: FaultContext) -> None:
        """Most faults heal by removing the toxics they added; some have nothing to undo."""
        for name in list(self.toxics):
            await self.remove_toxic(ctx, name)

    async def release(self, ctx: FaultContext) -> None:
        """Close the clients and sockets the fault opened (its tasks are already ended)."""

    def spawn(self, coro: Coroutine[Any, Any, T], what: str) -> asyncio.Task[T]:
        """A task that belongs to this fault: ``cleanup`` cancels it if it still runs."""
        task = asyncio.create_task(coro, name=f"fault-{self.spec.name}-{what}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def add_toxic(self, ctx: FaultContext, name: str, type: str, stream: str, attributes: dict[str, Any]) -> None:
        proxy = self.proxy(ctx)
        self.toxics[name] = proxy  # before the call: a cancelled call may still have added it
        await ctx.toxiproxy.add_toxic(proxy, name, type, stream, attributes=attributes)

    async def remove_toxic(self, ctx: FaultContext, name: str) -> None:
        proxy = self.toxics.pop(name, None)
        if proxy is not None:
            await ctx.toxiproxy.remove_toxic(proxy, name)

    def hits(self, ctx: FaultContext) -> set[str]:
        """The cohorts whose clients this fault disturbs (excluded from the healthy-delivery check)."""
        return {self.spec.cohort} if self.spec.cohort else set()

    def proxy(self, ctx: FaultContext) -> Proxy:
        assert self.spec.cohort is not None
        return ctx.proxies[self.spec.cohort]

    def toxic(self, suffix: str = "") -> str:
        return f"{self.spec.name}{suffix}"


class ToxicFault(Fault):
    """Adds one toxic to the cohort's proxy; healing removes it."""

    toxic_type: ClassVar[str]
    stream: ClassVar[str] = "downstream"

    def attributes(self) -> dict[str, Any]:
        return dict(self.params)

    async def apply(self, ctx: FaultContext) -> None:
        await self.add_toxic(ctx, self.toxic(), self.toxic_type, self.stream, self.attributes())


async def cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel every task in ``tasks`` (also those started meanwhile) and wait until each has ended."""
    while tasks:
        pending = list(tasks)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending)
        tasks.difference_update(pending)
        for task in pending:
            if not task.cancelled() and task.exception() is not None:
                log.debug("fault task %s ended with %r", task.get_name(), task.exception())


def make_fault(spec: FaultSpec) -> Fault:
    try:
        cls = FAULTS[spec.type]
    except KeyError:
        raise HarnessError(f"unknown fault type {spec.type!r}; known: {', '.join(sorted(FAULTS))}") from None
    return cls(spec)
