"""The HTTP API under load: ``POST /api/jobs`` at a fixed offered rate, beside ``enqueue()``.

    .venv/bin/python bench/api.py                         # 200 requests/s for 15 s
    .venv/bin/python bench/api.py --rate 400 --seconds 10

On the machine's PostgreSQL and Redis (a database and a Redis db of its own,
created fresh and dropped at the end). ``jobsys api --workers 2`` serves the API
(uvicorn); no worker consumes the jobs (the figure is the enqueue path's). The
client is open-loop: request *i* is sent at ``start + i / rate`` whether or not
earlier ones were answered, so a slow server shows as latency, not as a lower
offered load. Latency is from the scheduled send time to the answer; ``--warmup``
seconds of the same load go first, unmeasured. Then, in
this process, ``enqueue()`` is called at the same rate and timed the same way.
Target: p99 <= 50 ms at 200 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fairness import _kill, _recreate  # noqa: E402  (after the path is set)

USERS = 50


def environ(args: argparse.Namespace) -> dict[str, str]:
    return {
        "JOBSYS_DATABASE_URL": args.db_url,
        "JOBSYS_BROKER_URL": args.redis_url,
        "JOBSYS_IMPORTS": "bench.kinds",
    }


def prepare(args: argparse.Namespace) -> list[str]:
    """A fresh database, a user token per bench user; the tokens."""
    _recreate(args, create=True)
    os.environ.update(environ(args))
    from jobsys.engine.runtime import Runtime
    from jobsys.store import roles
    from jobsys.store.api_tokens import TokenStore
    from jobsys.store.migrate import upgrade
    from jobsys.store.users import UserStore

    upgrade(args.db_url)
    store = Runtime.from_env().postgres
    roles.create(store)  # a user token's enqueue runs as jobsys_api
    users, tokens = UserStore(store), TokenStore(store)
    made = [users.add(f"load{n}@example.com") for n in range(USERS)]
    return [tokens.create(name=u.email, user_id=u.id)[1] for u in made]


def serve(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    jobsys = str(Path(sys.executable).with_name("jobsys"))
    cmd = [jobsys, "api", "--port", str(args.port), "--workers", str(args.workers)]
    env = {**os.environ, **environ(args), "PYTHONPATH": str(ROOT)}
    log = open(args.log, "ab")
    process = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    import httpx2

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx2.get(f"http://127.0.0.1:{args.port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobsys api did not start; see {args.log}")
        time.sleep(0.2)


async def open_loop(
    rate: float, count: int, call: Callable[[int], Awaitable[bool]]
) -> tuple[list[float], int, float]:
    """Send ``count`` calls at ``rate``/s; (latencies in s, failures, elapsed s)."""
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()

    async def one(i: int) -> None:
        nonlocal failures
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        ok = await call(i)
        latencies.append(time.perf_counter() - due)
        failures += not ok

    await asyncio.gather(*(one(i) for i in range(count)))
    return latencies, failures, time.perf_counter() - start


async def over_http(args: argparse.Namespace, tokens: list[str]) -> tuple[list[float], int, float]:
    import httpx2

    url = f"http://127.0.0.1:{args.port}/api/jobs"
    limits = httpx2.Limits(max_connections=args.connections)
    async with httpx2.AsyncClient(limits=limits, timeout=30) as client:
        body = {"kind": "bench.noop"}

        async def post(i: int) -> bool:
            auth = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
            answer = await client.post(url, json=body, headers=auth)
            return answer.status_code == 201

        # Warm up at the same rate (connections, threads, token caches), not measured.
        await open_loop(args.rate, int(args.rate * args.warmup), post)
        return await open_loop(args.rate, int(args.rate * args.seconds), post)


async def direct(args: argparse.Namespace) -> tuple[list[float], int, float]:
    """``enqueue()`` in this process at the same rate (a thread each, as a web app's pool)."""
    from jobsys import enqueue
    from jobsys.engine.runtime import Runtime

    rt = Runtime.from_env()
    rt.load_imports()
    enqueue("bench.noop", user_id="warm-up", runtime=rt)

    async def call(i: int) -> bool:
        user = f"direct{i % USERS}"
        await asyncio.to_thread(enqueue, "bench.noop", user_id=user, runtime=rt)
        return True

    return await open_loop(args.rate, int(args.rate * args.seconds), call)


def describe(name: str, found: tuple[list[float], int, float]) -> str:
    latencies, failures, elapsed = found
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    rate = len(latencies) / elapsed
    return (
        f"{name:<22} {rate:7.1f}/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        f"  max {ordered[-1] * 1000:6.1f} ms  failed {failures}"
    )


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db-url", default="postgresql://postgres@127.0.0.1:5432/jobsys_bench_api")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--rate", type=float, default=200.0, help="offered requests per second")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of unmeasured load first")
    p.add_argument("--workers", type=int, default=2, help="uvicorn workers")
    p.add_argument("--connections", type=int, default=64, help="client connection pool")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--log", default="/tmp/jobsys-bench-api.log")
    return p.parse_args()


def main() -> None:
    args = parse()
    tokens = prepare(args)
    server = serve(args)
    try:
        http = asyncio.run(over_http(args, tokens))
    finally:
        _kill(server)
    direct_run = asyncio.run(direct(args))
    _recreate(args, create=False)
    print(f"offered {args.rate:.0f}/s for {args.seconds:.0f} s, {args.workers} uvicorn workers")
    print(describe("POST /api/jobs", http))
    print(describe("enqueue() direct", direct_run))
    p99 = sorted(http[0])[max(0, int(len(http[0]) * 0.99) - 1)] * 1000
    print(f"target p99 <= 50 ms at 200/s: {'MET' if p99 <= 50 else 'MISSED'} ({p99:.1f} ms)")


if __name__ == "__main__":
    main()
