from __future__ import annotations

import threading
import time

import networkx as nx

from modelform.engine.walk import Walker


def chain_graph() -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_edges_from([("a", "b"), ("b", "c"), ("x", "y")])
    g.add_node("solo")
    return g


def test_order_respects_edges() -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def step(n: str) -> None:
        with lock:
            seen.append(n)

    res = Walker(chain_graph(), step, 4).run()
    assert sorted(res.done) == ["a", "b", "c", "solo", "x", "y"]
    assert seen.index("a") < seen.index("b") < seen.index("c")
    assert seen.index("x") < seen.index("y")


def test_failure_skips_only_descendants() -> None:
    def step(n: str) -> None:
        if n == "a":
            raise RuntimeError("boom")

    res = Walker(chain_graph(), step, 2).run()
    assert set(res.failed) == {"a"}
    assert res.skipped == ["b", "c"]
    assert sorted(res.done) == ["solo", "x", "y"]


def test_parallelism_is_capped() -> None:
    g = nx.DiGraph()
    g.add_nodes_from(range(12))
    running = 0
    peak = 0
    lock = threading.Lock()

    def step(n: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    Walker(g, step, 3).run()
    assert peak == 3


def test_stop_lets_in_flight_finish_and_starts_nothing_new() -> None:
    g = nx.DiGraph()
    g.add_edges_from([("a", "b")])
    g.add_node("c")
    walker: Walker

    def step(n: str) -> None:
        if n == "a":
            walker.stop()
            time.sleep(0.05)

    walker = Walker(g, step, 1)
    res = walker.run()
    assert "a" in res.done
    assert "b" in res.cancelled


def test_halted_starts_nothing_new_and_lets_in_flight_finish_undisturbed() -> None:
    g = nx.DiGraph()
    g.add_edges_from([("a", "b")])
    g.add_nodes_from(["c", "d"])
    halt = threading.Event()
    both_running = threading.Barrier(2, timeout=5)
    walker: Walker
    seen_stopped: list[bool] = []

    def step(n: str) -> None:
        both_running.wait()
        if n == "a":
            halt.set()  # as the state writer failing while "a" and "c" run
            time.sleep(0.05)
            seen_stopped.append(walker.stopped)  # a halt is no interrupt: waits go on
        else:
            assert halt.wait(5)

    walker = Walker(g, step, 2, halted=halt.is_set)
    res = walker.run()
    assert sorted(res.done) == ["a", "c"]
    assert sorted(res.cancelled) == ["b", "d"]
    assert seen_stopped == [False]


def test_a_step_waiting_elsewhere_gives_up_its_slot() -> None:
    """With one slot, "a" waits (a rollout on a cluster) for "b" to have run:
    only possible when the wait gives the slot up; after it, "a" works with a
    slot again, never beside another step."""
    from modelform.engine.walk import waiting

    g = nx.DiGraph()
    g.add_nodes_from(["a", "b", "c"])
    b_ran = threading.Event()
    working = 0
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal working, peak
        with lock:
            working += 1
            peak = max(peak, working)
        time.sleep(0.02)
        with lock:
            working -= 1

    def step(n: str) -> None:
        work()
        if n == "a":
            with waiting():
                assert b_ran.wait(5), "b never started while a waited"
            work()
        else:
            b_ran.set()

    res = Walker(g, step, 1).run()
    assert sorted(res.done) == ["a", "b", "c"]
    assert peak == 1
