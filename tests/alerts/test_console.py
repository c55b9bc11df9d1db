"""The console receiver prints each alert transition once, on one line, whatever the
group's repeats; untrusted text cannot reach the terminal as control sequences."""

from __future__ import annotations

import io

from convmon.alerts.config import ConsoleReceiver
from convmon.alerts.notification import Notification
from convmon.alerts.receivers.console import ConsoleSender
from convmon.monitor.alerting import AlertTransition
from tests.alerts.helpers import transition


def notification(*alerts: AlertTransition, version: int = 1) -> Notification:
    return Notification(
        receiver="c", group_key="g", group_labels={"alertname": "Share"},
        firing=[a for a in alerts if a.state == "firing"],
        resolved=[a for a in alerts if a.state == "resolved"], version=version, sent_at=1.8e9,
    )


async def test_one_line_per_transition_and_nothing_for_a_repeat() -> None:
    out = io.StringIO()
    sender = ConsoleSender(ConsoleReceiver(name="c"), stream=out)
    a = transition({"alertname": "Share", "pool": "antpool"}, "firing", 1, 1.8e9)
    b = transition({"alertname": "Share", "pool": "foundry\x1b[31m"}, "firing", 1, 1.8e9)
    await sender.send(notification(a, b))
    await sender.send(notification(a, b, version=2))  # repeat_interval: nothing new
    b_resolved = transition({"alertname": "Share", "pool": "foundry\x1b[31m"}, "resolved", 2,
                            1.8e9)
    await sender.send(notification(a, b_resolved, version=3))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "FIRING" in lines[0] and "pool=antpool" in lines[0]
    assert "FIRING" in lines[1] and "RESOLVED" in lines[2] and "pool=foundry" in lines[2]
    assert "\x1b" not in out.getvalue()
