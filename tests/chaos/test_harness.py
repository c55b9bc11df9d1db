"""The chaos harness's own arithmetic and recorder, on small inputs (the suite itself is
``make chaos``, not part of these tests)."""

from __future__ import annotations

import aiohttp
import pytest

from chaos.config import WEBHOOK, alerts_section, webhook_groups
from chaos.daemon import last_words
from chaos.daemonlog import digest
from chaos.ledger import (
    Delivered,
    Emitted,
    EventLedger,
    StreamEntry,
    Window,
    fact_key,
    tally_notifications,
)
from chaos.receiver import WebhookRecorder, deliveries
from chaos.report import summary_table

WINDOWS = [Window("a", 1000.0, 2000.0), Window("b", 2000.0, float("inf"))]


def entry(ms: int, event_id: str) -> StreamEntry:
    return StreamEntry(f"{ms}-0", event_id)


def test_fact_key_is_the_first_three_parts() -> None:
    assert fact_key("btc:block:abc") == "btc:block:abc"
    assert fact_key("btc:block:abc:reorg:r1") == "btc:block:abc"
    assert fact_key("sol:payout:SIG:MINT") == "sol:payout:SIG"


def test_a_missing_id_is_lost_and_a_repeated_id_is_duplicated() -> None:
    ledger = EventLedger()
    ledger.produce("btc:block:h1", "bitcoin", "a", 1001.0)
    ledger.produce("btc:block:h2", "bitcoin", "a", 1002.0)
    ledger.produce("sol:payout:s1", "depin", "b", 2001.0)
    ledger.produce("sol:payout:s2", "depin", "b", 2002.0)
    stream = [
        entry(1_001_500, "btc:block:h1"),
        entry(1_500_000, "market:price:x"),            # not a fact: neither lost nor counted
        entry(2_003_000, "sol:payout:s1:MINT"),
        entry(2_004_000, "btc:block:h1"),              # second copy, appended during "b"
    ]
    a, b = ledger.tally(stream, WINDOWS)
    assert (a.produced, a.published, a.lost, a.duplicated) == (2, 1, 1, 0)
    assert a.lost_examples == ["btc:block:h2"]
    assert a.lost_by_source == {"bitcoin": 1}
    assert (b.produced, b.published, b.lost, b.duplicated) == (2, 1, 1, 1)
    assert b.duplicate_examples == ["btc:block:h1"]
    assert b.lost_examples == ["sol:payout:s2"]
    assert not a.ok and not b.ok
    assert [f.key for f in ledger.unpublished(stream)] == ["btc:block:h2", "sol:payout:s2"]
    assert [f.key for f in ledger.unpublished(stream, "a")] == ["btc:block:h2"]


def test_a_reorg_connected_block_and_a_payout_in_two_mints_count_once() -> None:
    ledger = EventLedger()
    ledger.produce("btc:block:h1", "bitcoin", "a", 1001.0)
    ledger.produce("sol:payout:s1", "depin", "a", 1002.0)
    stream = [entry(1_100_000, "btc:block:h1:reorg:r9"),
              entry(1_100_001, "sol:payout:s1:HNT"), entry(1_100_002, "sol:payout:s1:IOT")]
    [a] = ledger.tally(stream, WINDOWS[:1])
    assert (a.produced, a.published, a.lost, a.duplicated) == (2, 2, 0, 0)
    assert a.ok


def test_a_fact_must_be_well_formed_and_unique() -> None:
    ledger = EventLedger()
    with pytest.raises(ValueError, match="three"):
        ledger.produce("btc:block:h1:extra", "bitcoin", "a", 1.0)
    ledger.produce("btc:block:h1", "bitcoin", "a", 1.0)
    with pytest.raises(ValueError, match="twice"):
        ledger.produce("btc:block:h1", "bitcoin", "a", 2.0)


def test_notifications_lost_duplicated_folded_and_unexpected() -> None:
    emitted = [
        Emitted("g1", "f1", "firing", 1001.0, "A"),
        Emitted("g1", "f1", "resolved", 1010.0, "A"),
        Emitted("g2", "f2", "firing", 1020.0, "B"),       # never delivered: lost
        Emitted("g3", "f3", "firing", 2001.0, "C"),       # only its resolved arrived: folded
        Emitted("g3", "f3", "resolved", 2002.0, "C"),
        Emitted("g4", "f4", "firing", 2003.0, "D"),       # delivered twice
        Emitted("g4", "f4", "firing", 2003.0, "D"),       # the same transition read twice
    ]
    delivered = [
        Delivered("g1", "f1", "firing", "2026-01-01T00:00:00.000Z"),
        Delivered("g1", "f1", "resolved", "2026-01-01T00:00:00.000Z"),
        Delivered("g3", "f3", "resolved", "2026-01-01T00:00:01.000Z"),
        Delivered("g4", "f4", "firing"),
        Delivered("g4", "f4", "firing"),
        Delivered("g9", "f9", "firing"),                  # matches nothing emitted
    ]
    (a, b), unexpected = tally_notifications(emitted, delivered, WINDOWS)
    assert (a.expected, a.delivered, a.folded, a.lost, a.duplicated) == (3, 2, 0, 1, 0)
    assert a.lost_examples == ["B/firing"]
    assert (b.expected, b.delivered, b.folded, b.lost, b.duplicated) == (3, 2, 1, 0, 1)
    assert b.duplicate_examples == ["D/firing x2"]
    assert (unexpected.count, unexpected.other_group) == (1, 0)
    assert unexpected.examples == ["group g9 alert f9 firing"]


def test_an_alert_delivered_in_another_group_is_unexpected_and_its_own_is_lost() -> None:
    emitted = [Emitted("g1", "f1", "firing", 1001.0, "A")]
    (a,), unexpected = tally_notifications(emitted, [Delivered("gX", "f1", "firing")],
                                          WINDOWS[:1])
    assert (a.delivered, a.lost) == (0, 1)
    assert (unexpected.count, unexpected.other_group) == (1, 1)


def test_a_resolved_notification_without_a_start_time_does_not_cover_the_firing() -> None:
    emitted = [Emitted("g", "f", "firing", 1001.0), Emitted("g", "f", "resolved", 1002.0)]
    delivered = [Delivered("g", "f", "resolved", "0001-01-01T00:00:00Z")]
    [a], _ = tally_notifications(emitted, delivered, WINDOWS[:1])
    assert (a.delivered, a.folded, a.lost) == (1, 0, 1)


def test_deliveries_reads_alertmanager_style_bodies() -> None:
    body = {"groupKey": "g", "alerts": [
        {"fingerprint": "f1", "status": "firing", "startsAt": "t1"},
        {"fingerprint": "f2", "status": "resolved", "startsAt": "t2"}, "junk"]}
    assert deliveries([body]) == [Delivered("g", "f1", "firing", "t1"),
                                  Delivered("g", "f2", "resolved", "t2")]


def test_only_the_chaos_rule_goes_to_the_webhook_one_group_per_alert() -> None:
    groups = webhook_groups(alerts_section("http://127.0.0.1:1/hook"))
    one = groups({"alertname": "ChaosBlock", "group": "chaos", "event_id": "btc:block:1"})
    two = groups({"alertname": "ChaosBlock", "group": "chaos", "event_id": "btc:block:2"})
    assert len(one) == 1 and len(two) == 1 and one != two
    assert groups({"alertname": "Watchdog", "group": "ops"}) == []
    assert WEBHOOK in str(alerts_section("x")["receivers"])


def test_daemon_log_digest_counts_warnings_by_subject() -> None:
    lines = [
        '{"level": "error", "msg": "component failed", "component": "depin"}',
        '{"level": "error", "msg": "component failed", "component": "depin"}',
        '{"level": "info", "msg": "convmon started"}',
        "ALERT [FIRING] Watchdog",
        '{"level": "warning", "msg": "retry", "reason": "http_5xx"}',
    ]
    assert digest(lines) == [(2, "error 'component failed' [component=depin]"),
                             (1, "warning 'retry' [reason=http_5xx]")]


def test_summary_table_has_a_row_per_scenario_and_totals() -> None:
    from chaos.results import ScenarioResult

    ledger = EventLedger()
    ledger.produce("btc:block:h1", "bitcoin", "a", 1001.0)
    result = ScenarioResult("a", "test", 1000.0)
    [result.events] = ledger.tally([], WINDOWS[:1])
    lines = summary_table([result])
    assert lines[2].split()[:5] == ["a", "1", "0", "1", "0"]
    assert lines[2].endswith("NOT OK")
    assert lines[-1].startswith("total")


async def test_recorder_records_refuses_and_closes() -> None:
    rec = WebhookRecorder()
    await rec.start()
    body = {"groupKey": "g", "alerts": [{"fingerprint": "f", "status": "firing"}]}
    try:
        async with aiohttp.ClientSession() as session:
            async def post() -> int | str:
                try:
                    async with session.post(rec.url, json=body) as resp:
                        return resp.status
                except aiohttp.ClientError as exc:
                    return type(exc).__name__

            assert await post() == 200
            await rec.set_mode("503")
            assert await post() == 503
            await rec.set_mode("closed")
            assert await post() != 200
            assert await post() == "ClientConnectorError"
            await rec.set_mode("up")
            assert await post() == 200
    finally:
        await rec.close()
    assert rec.refused == 1
    assert [d.fingerprint for d in rec.delivered()] == ["f", "f"]


def test_last_words_of_a_daemon_that_exits_by_itself() -> None:
    crashed = "\n".join([
        '{"level": "info", "msg": "convmon started"}',
        "ALERT [FIRING] Watchdog",
        "error: plugin 'bitcoin' failed to",
        "load: cannot import name 'X'",
    ])
    assert last_words(crashed) == "error: plugin 'bitcoin' failed to load: cannot import name 'X'"
    failed = '{"level": "error", "msg": "redis unreachable", "error": "ConnectionError"}\n'
    assert last_words(failed) == "redis unreachable ConnectionError"
    assert last_words('{"level": "info", "msg": "convmon stopped"}') == ""
