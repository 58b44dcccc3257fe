"""A plain load test (``wschaos load``): the target behind Toxiproxy, the feed on, Locust's users
through one proxy, judged by the ``load`` checker.

It is built from the scenario runner's pieces (the target, a proxy to it, the feed) and from
``LocustRun``, the Locust process driver in ``harness.load``.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.external import make_target
from harness.feed import Feed
from harness.history import HISTORY_FILE, History
from harness.load import EXIT_MARGIN, LOAD_COHORT, LocustRun
from harness.loadspec import LoadSpec
from harness.runner import start_feed, target_proxy
from harness.target import Target
from harness.targetspec import TargetSpec
from harness.toxiproxy import Proxy, ToxiproxyServer, running_toxiproxy

if TYPE_CHECKING:
    from harness.checkers import Verdict


@dataclass
class Stage:
    """What a plain load test runs besides Locust: the history, Toxiproxy, the target, its proxy, the feed."""

    history: History
    server: ToxiproxyServer
    target: Target
    proxy: Proxy
    feed: Feed

    @property
    def host(self) -> str:
        return self.proxy.url("")


@asynccontextmanager
async def stage(target_spec: TargetSpec, run_dir: Path, *, feed_rate: float = 200.0, seed: int = 0,
                params: Mapping[str, Any] | None = None) -> AsyncIterator[Stage]:  # fmt: skip
    """Start Toxiproxy, the target and a ``load`` proxy in front of it, and the feed; stop them all on the way out."""
    run_dir.mkdir(parents=True, exist_ok=True)
    history = History(run_dir / HISTORY_FILE)
    try:
        async with running_toxiproxy(run_dir) as toxiproxy, AsyncExitStack() as stack:
            assert toxiproxy.server is not None
            target = await stack.enter_async_context(make_target(target_spec, run_dir / "target", history, params))
            proxy = await target_proxy(toxiproxy, target, stack, LOAD_COHORT)
            feed = await start_feed(target, history, feed_rate, random.Random(f"{seed}:feed"), stack)
            yield Stage(history, toxiproxy.server, target, proxy, feed)
    finally:
        history.close()


@dataclass
class LoadResult:
    run_dir: Path
    summary: dict[str, Any] | None
    verdict: Verdict
    ended_by_itself: bool

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), "summary": self.summary, "verdict": self.verdict.to_json(),
                "ended_by_itself": self.ended_by_itself}  # fmt: skip


async def run_plain_load(
    target_spec: TargetSpec,
    spec: LoadSpec,
    run_dir: Path,
    *,
    feed_rate: float = 200.0,
    seed: int = 0,
    checks: dict[str, Any] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> LoadResult:
    """A load test of its own: Locust's users for ``spec.time_s`` against the target, its reports in
    ``run_dir`` (locust.html, locust.json, locust_*.csv), judged by ``check_load`` with ``checks``."""
    from harness.checkers import CheckContext, check_load

    async with stage(target_spec, run_dir, feed_rate=feed_rate, seed=seed) as staged:
        progress(f"{target_spec.name} on {staged.target.host}:{staged.target.port}, behind proxy {staged.proxy.listen}")
        locust = LocustRun(spec, staged.host, run_dir, history=staged.history, ws_path=target_spec.ws_path,
                           shape=target_spec.messages, dialect=target_spec.dialect)  # fmt: skip
        async with locust:
            progress(f"Locust: {spec.users} users at {spec.spawn_rate:g}/s for {spec.time_s:g}s ({spec.mix_text()})")
            await locust.ramp_up()
            progress("all users running")
            ended = await locust.wait(spec.time_s + EXIT_MARGIN)
        verdict = check_load(CheckContext(history=staged.history), dict(checks or {}))
    result = LoadResult(run_dir, locust.summary, verdict, ended)
    (run_dir / "load.json").write_text(json.dumps({"spec": asdict(spec), **result.to_json()}, indent=2, default=str))
    return result


def summary_lines(summary: dict[str, Any] | None) -> list[str]:
    """The figures a person reads first."""
    if not summary:
        return ["Locust wrote no summary (see locust.log)"]
    return [
        f"users (peak)        {summary['peak_users']}",
        f"batches received    {summary['batches']} ({summary['rps']:g}/s over {summary['duration_s']:g}s)",
        f"delivery latency    p50 {summary['p50']} ms, p90 {summary['p90']} ms, p99 {summary['p99']} ms, "
        f"max {summary['max_ms']} ms",
        f"connects            {summary['connects']} ({summary['connect_failures']} failed), "
        f"{summary['disconnects']} unexpected disconnects",
        f"failures            {summary['failures']} of {summary['requests']} requests",
        f"missed batches      {summary['gaps']} in {summary['gap_events']} seq gaps",
        f"Locust CPU (peak)   {summary['peak_cpu']:g}% of a core, one process",
    ]
