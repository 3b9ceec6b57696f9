"""The event hub: a subscriber that does not read loses its oldest events, counted in
``dropped`` (``obol_events_dropped`` in /metrics), and never slows the publisher or the
other subscribers."""

from __future__ import annotations

from node.runtime.events import SUBSCRIBER_QUEUE, EventHub


def drain(queue) -> list[int]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait()["n"])
    return out


def test_a_slow_subscriber_loses_its_oldest_events_and_they_are_counted():
    hub = EventHub()
    slow, fast = hub.subscribe(), hub.subscribe()
    extra = 7
    for n in range(SUBSCRIBER_QUEUE):
        hub.publish({"n": n})
        assert fast.get_nowait()["n"] == n
    assert hub.dropped == 0
    for n in range(SUBSCRIBER_QUEUE, SUBSCRIBER_QUEUE + extra):
        hub.publish({"n": n})
        assert fast.get_nowait()["n"] == n
    assert hub.dropped == extra
    assert hub.published == SUBSCRIBER_QUEUE + extra
    assert drain(slow) == list(range(extra, SUBSCRIBER_QUEUE + extra))


def test_unsubscribed_queues_get_nothing_and_count_nothing():
    hub = EventHub()
    gone = hub.subscribe()
    assert hub.listened and hub.subscribers == 1
    hub.unsubscribe(gone)
    for n in range(SUBSCRIBER_QUEUE + 3):
        hub.publish({"n": n})
    assert gone.empty() and hub.dropped == 0 and not hub.listened
    assert hub.subscriptions == 1
