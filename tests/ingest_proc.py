"""Store + Ingest on one log file, running until killed: `python -m tests.ingest_proc DB LOG`.

Prints `ready` once tailing has started. Used by the kill -9 test.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from monitor.ingest import Ingest, NodeSource
from monitor.metrics import Metrics
from monitor.store import Store


async def main(db: Path, log: Path) -> None:
    store = await Store.open(db)
    ingest = Ingest(
        [NodeSource("n1", log)],
        store,
        lambda _events: None,
        Metrics(),
        from_start=True,
        poll_interval=0.005,
        batch_size=20,  # many small transactions: more moments for a kill to land between
    )
    await ingest.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
