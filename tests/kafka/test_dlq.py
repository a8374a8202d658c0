"""Dead letters as the walls count them: read leniently, whatever put them on the DLQ."""

from datetime import UTC, datetime

from ioc.kafka.dlq import DeadLetter, RecordedDeadLetter


def test_a_dead_letter_reads_back_with_where_it_came_from_and_why() -> None:
    letter = DeadLetter(
        value=b"{oops",
        key=b"k",
        reason="invalid JSON",
        source_topic="ioc.hotline.tickets",
        source_partition=2,
        source_offset=41,
        consumer="hotline",
    )
    recorded = RecordedDeadLetter.of(1, 7, 0, letter.headers(), letter.value)
    assert (recorded.dlq_partition, recorded.dlq_offset) == (1, 7)
    assert (recorded.source_topic, recorded.source_partition, recorded.source_offset) == (
        "ioc.hotline.tickets",
        2,
        41,
    )
    assert (recorded.consumer, recorded.reason, recorded.size_bytes) == (
        "hotline",
        "invalid JSON",
        5,
    )
    assert abs((recorded.failed_at - datetime.now(UTC)).total_seconds()) < 60


def test_a_record_put_on_the_dlq_by_hand_still_gets_a_row() -> None:
    recorded = RecordedDeadLetter.of(0, 3, 1_700_000_000_000, [("source_offset", b"x")], None)
    assert recorded.reason == "(no reason header)" and recorded.source_offset is None
    assert recorded.failed_at == datetime.fromtimestamp(1_700_000_000, UTC)


def test_a_huge_value_keeps_its_head_and_says_how_large_it_was() -> None:
    from types import SimpleNamespace

    from ioc.kafka.dlq import KEPT_VALUE_BYTES

    huge = b"x" * (3 * KEPT_VALUE_BYTES)
    record = SimpleNamespace(topic="ioc.sensor.events", partition=0, offset=9, key=b"k", value=huge)
    letter = DeadLetter.of(record, "invalid SensorEvent", "sensors")
    assert letter.value == huge[:KEPT_VALUE_BYTES]
    assert dict(letter.headers())["value_bytes"] == str(len(huge)).encode()
    small = DeadLetter.of(SimpleNamespace(**{**vars(record), "value": b"{"}), "bad", "sensors")
    assert small.value == b"{" and "value_bytes" not in dict(small.headers())
