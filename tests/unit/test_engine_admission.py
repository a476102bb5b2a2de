"""Admission: a node keeps a ready buffer in the broker and refills it from the backlog."""

from __future__ import annotations

from jobsys import enqueue, enqueue_many
from jobsys.engine.admission import Admitter, Promoter, queue_size
from jobsys.engine.dispatch import Why
from tests.support.engine import ECHO, Engine
from tests.support.wait import wait_until


def flood(engine: Engine, user: str, n: int, priority: int | None = None) -> None:
    enqueue_many(
        ECHO.kind, [(user, {"value": i}) for i in range(n)], priority=priority, runtime=engine.rt
    )


def test_a_fill_tops_the_buffer_up_to_its_target_and_no_further(engine: Engine) -> None:
    # Given 20 jobs in the backlog and a node of concurrency 4: while idle, a refill's
    # worth is its concurrency, on top of a low water of a quarter of that
    flood(engine, "heavy", 20)
    admitter = Admitter(engine.rt, ["default"], 4)
    assert admitter.levels() == (5, 1)

    # When it fills its buffer, then fills again with the buffer still full
    assert admitter.fill("default") is True
    assert admitter.fill("default") is True

    # Then the broker holds 5 messages, all admitted from the backlog
    assert queue_size(engine.rt, "default") == 5
    assert engine.hook.whys() == [Why.ADMIT] * 5


def take_one(engine: Engine, queue: str = "default") -> None:
    with engine.rt.app.connection_for_read() as conn:
        assert conn.default_channel.basic_get(queue, no_ack=True) is not None


def test_a_fill_waits_for_the_buffer_to_drain_to_its_low_water_before_promoting(
    engine: Engine,
) -> None:
    # Given a full buffer of 10: a refill's worth of 8 over a low water of 2
    flood(engine, "heavy", 20)
    admitter = Admitter(engine.rt, ["default"], 8)
    admitter.fill("default")
    engine.forget()
    assert admitter.headroom == {"default": 8}

    # When seven messages are taken, three are left: over the low water, nothing is promoted
    for _ in range(7):
        take_one(engine)
    admitter.fill("default")
    assert engine.hook.dispatched == [] and queue_size(engine.rt, "default") == 3
    assert admitter.next_look({"default"}) == 1

    # When one more is taken, two are left: the buffer is topped up to 10 in one promotion
    take_one(engine)
    admitter.fill("default")
    assert engine.store.calls == ["promote"]
    assert queue_size(engine.rt, "default") == 10


def test_the_low_water_covers_what_the_node_takes_during_two_promotions(engine: Engine) -> None:
    # Given a node taking 400 messages a second, refilling 0.1 s of them (40)
    engine.rt.settings = engine.rt.settings.model_copy(update={"ready_seconds": 0.1})
    admitter = Admitter(engine.rt, ["default"], 2)
    admitter.rate.value = 400.0
    admitter.rate.since += 1e9  # (no new reading)

    # While promotions are quick, the refill starts at a quarter of a refill's worth
    admitter.promote_s = 0.001
    assert admitter.levels() == (50, 10)

    # When promotions take 20 ms, it starts with 16 left: 8 are taken during each
    admitter.promote_s = 0.02
    assert admitter.levels() == (56, 16)

    # Under a ready_max of 20, the refill still starts at half the buffer, not at its top
    engine.rt.settings = engine.rt.settings.model_copy(update={"ready_max": 20})
    assert admitter.levels() == (20, 10)


def test_a_fill_times_its_promotions(engine: Engine) -> None:
    # Given a backlog and a node whose promotions have taken no time so far
    flood(engine, "heavy", 20)
    admitter = Admitter(engine.rt, ["default"], 4)
    assert admitter.promote_s == 0.0

    # When it promotes, its promotions' wall time is what the low water follows
    admitter.fill("default")
    assert admitter.promote_s > 0.0


def test_urgent_work_is_promoted_into_a_full_buffer(engine: Engine) -> None:
    # Given a full buffer of a flood
    flood(engine, "flood", 20)
    admitter = Admitter(engine.rt, ["default"], 2)
    admitter.fill("default")
    engine.forget()

    # When an urgent job joins the backlog and the promoter is told so
    urgent = enqueue(ECHO.kind, user_id="u2", priority=9, runtime=engine.rt)
    admitter.fill("default", urgent=True)

    # Then it is published at once, with the top broker priority
    assert [d.job_id for d in engine.hook.dispatched] == [urgent.job_id]
    priorities = {m.task_id: m.priority for m in engine.broker.take("default")}
    assert priorities[urgent.id] == 0


def test_users_that_start_waiting_get_a_job_each_into_a_full_buffer(engine: Engine) -> None:
    # Given a full buffer of a flood, the flood's user ahead of the queue's clock
    flood(engine, "flood", 20)
    admitter = Admitter(engine.rt, ["default"], 2)
    admitter.fill("default")
    engine.forget()

    # When two users start waiting, one with two jobs, and the promoter is told so
    enqueue(ECHO.kind, user_id="light-1", runtime=engine.rt)
    enqueue_many(ECHO.kind, [("light-2", {}), ("light-2", {})], runtime=engine.rt)
    engine.forget()
    admitter.fill("default", joined=True)

    # Then each got its first job published at once, in a catch-up promotion
    assert engine.store.calls == ["promote"]
    assert sorted(d.user_id for d in engine.hook.dispatched) == ["light-1", "light-2"]
    # And a look without news promotes nothing while the buffer is over its low water
    engine.forget()
    admitter.fill("default")
    assert engine.hook.dispatched == []


def test_the_target_follows_the_rate_within_its_bounds(engine: Engine) -> None:
    admitter = Admitter(engine.rt, ["default"], 2)
    admitter.rate.value = 1000.0  # messages/s taken: 1 s of them is 1,000, a quarter 250
    admitter.rate.since += 1e9  # (no new reading)
    assert admitter.target() == 1250
    admitter.rate.value = 1e7
    assert admitter.target() == engine.rt.settings.ready_max


def test_a_running_promoter_publishes_the_backlog_as_the_node_takes_messages(
    engine: Engine,
) -> None:
    # Given a promoter over the in-memory store (no notifications: it polls)
    flood(engine, "heavy", 30)
    promoter = Promoter(Admitter(engine.rt, ["default"], 5))
    promoter.start()
    try:
        # When the node takes messages as fast as they come, telling the promoter
        taken: list[str] = []

        def take() -> bool:
            for message in engine.broker.take("default"):
                taken.append(message.task_id)
                promoter.received()
            return len(taken) == 30

        wait_until(take, timeout=20, what="every job to be published", interval=0.01)
    finally:
        promoter.stop()
        promoter.join(5)

    # Then each job was published exactly once
    assert len(set(taken)) == 30
    assert engine.hook.whys() == [Why.ADMIT] * 30
