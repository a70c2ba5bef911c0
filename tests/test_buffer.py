"""buffer.py: the request listener (the hot path) and its bounded queue."""

from __future__ import annotations

from unit_util import Wake, record

from locust_sink.buffer import RecordBuffer


def test_buffer_is_bounded_and_accounts_every_record():
    wake = Wake()
    buf = RecordBuffer(maxsize=5, batch_size=3, notify=wake.set)
    results = [buf.put(record(i)) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    acc = buf.accounting
    assert len(buf) == 5 and acc.emitted == 8 and acc.queued == 5 and acc.dropped == 3 and acc.overflowed == 3
    assert wake.count == 1  # woken once, when a full batch was waiting
    batch = buf.take(3)
    assert batch == [record(0), record(1), record(2)] and acc.in_flight == 3 and acc.queued == 2
    assert buf.take(1) == [record(3)] and len(buf) == 1  # a partial take from the chunk being filled
    assert buf.put(record(8)) and buf.put(record(9)) and buf.put(record(10))
    assert buf.take(10) == [record(i) for i in (4, 8, 9, 10)] and len(buf) == 0 and buf.take(5) == []
    acc.in_flight -= 5
    acc.indexed += 5
    assert acc.balanced()
    acc.in_flight -= 3
    acc.indexed += 3
    assert acc.balanced() and "indexed=8" in acc.summary()


def test_the_request_listener_is_the_buffers_own_method():
    """`attach` registers RecordBuffer.on_request itself with Locust; a request event becomes one queued record
    with the sink's run id, the next sequence number, the response's status code and Locust's failure text;
    sampled-out successes and a full queue are counted, never lost silently."""
    from locust.env import Environment
    from locust.exception import CatchResponseError
    from locust.stats import StatsError

    import locust_sink

    env = Environment()
    sink = locust_sink.attach(env, sink_dir="unused", run_id="r1", sink_batch_size=2, sink_queue_size=3)
    env.events.request.remove_listener(sink.buffer.on_request)  # raises ValueError unless it was registered
    env.events.request.add_listener(sink.buffer.on_request)

    class Response:
        status_code = 503

    failure = CatchResponseError("checked: body did not match")
    env.events.request.fire(request_type="GET", name="/x", response_time=12.5, response_length=10, response=None,
                            context={}, exception=None, start_time=2.0, url="u")  # fmt: skip
    env.events.request.fire(request_type="POST", name="/b", response_time=3.0, response_length=None,
                            response=Response(), context={"k": 1}, exception=failure, start_time=3.0,
                            url=None)  # fmt: skip
    assert sink.buffer.take(10) == [
        record(1, start_time=2.0, status_code=None, url="u"),
        record(2, start_time=3.0, request_type="POST", name="/b", response_time=3.0, response_length=0,
               status_code=503, exception=StatsError.parse_error(failure), context={"k": 1}, url=None),
    ]  # fmt: skip
    for _ in range(5):  # the queue holds 3: two meet a full queue
        env.events.request.fire(request_type="GET", name="/a", response_time=1.0, response_length=1, exception=None)
    acc = sink.buffer.accounting
    assert (acc.emitted, acc.queued, acc.in_flight, acc.dropped, acc.overflowed) == (7, 3, 2, 2, 2)
    sink.buffer.sample_rate = 0.000001
    env.events.request.fire(request_type="GET", name="/a", response_time=1.0, response_length=1, exception=None)
    assert sink.buffer.sampled_out == 1 and acc.emitted == 7


def test_resize_applies_to_the_chunks_of_the_next_records():
    """A worker takes its batch size from the master: resize() sets the bound and the chunk size together, so
    the next full batch wakes the delivery loop and leaves the buffer as one chunk per batch."""
    wake = Wake()
    buf = RecordBuffer(maxsize=10, batch_size=100, notify=wake.set)
    buf.resize(maxsize=4, batch_size=2)
    results = [buf.put(record(i)) for i in range(1, 6)]
    assert results == [True] * 4 + [False] and wake.count == 1
    assert buf.take_flat(2) == [field for rec in (record(1), record(2)) for field in rec]
    assert buf.take(5) == [record(3), record(4)]
