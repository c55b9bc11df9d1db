"""Secret values are scrubbed from any text leaving the process, whoever wrote it."""

from __future__ import annotations

import logging
import sys

import pytest

from convmon.monitor.logs import ConsoleFormatter, JsonFormatter
from convmon.monitor.secrets import Secret, remember, scrub


def test_a_revealed_secret_url_is_scrubbed_whole_and_in_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCRUB_WS", "wss://eth.example.net/v2/Zq81kLm0pQ3rS5tU7vW9xY")
    url = Secret("env:SCRUB_WS").reveal()
    text = f"cannot connect to {url}; retrying eth.example.net/v2/Zq81kLm0pQ3rS5tU7vW9xY"
    assert scrub(text) == "cannot connect to ***; retrying eth.example.net/***"


def test_passwords_and_query_keys_are_scrubbed_but_words_are_not() -> None:
    remember("redis://:s3cret-pw@redis.internal:6379/0")
    remember("https://rpc.example.org/services/mainnet?api-key=9f8e7d6c5b4a")
    out = scrub("auth s3cret-pw failed for services/mainnet with key 9f8e7d6c5b4a")
    assert out == "auth *** failed for services/mainnet with key ***"


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_log_lines_are_scrubbed_including_tracebacks(formatter: logging.Formatter) -> None:
    remember("tok-7f3a9c1e5b2d")
    try:
        raise ConnectionError("401 for https://api.example.com/?key=tok-7f3a9c1e5b2d")
    except ConnectionError:
        record = logging.LogRecord(
            "lib", logging.ERROR, __file__, 1, "failed with %s", ("tok-7f3a9c1e5b2d",),
            sys.exc_info(),
        )
    record.detail = "extra tok-7f3a9c1e5b2d"
    line = formatter.format(record)
    assert "tok-7f3a9c1e5b2d" not in line
    assert line.count("***") >= 3
