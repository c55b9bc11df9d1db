"""The bitcoin collector's errors form one family under the collectors' base classes."""

from __future__ import annotations

import pytest

from convmon.collectors import errors as collector_errors
from convmon.collectors.bitcoin import errors


@pytest.mark.parametrize(
    "error",
    [errors.MalformedBlock, errors.SourceUnavailable, errors.BlockNotFound,
     errors.ReorgTooDeep, errors.RegistryError, errors.LabelError],
)
def test_every_bitcoin_error_is_a_collector_error(error: type[Exception]) -> None:
    assert issubclass(error, errors.BitcoinCollectorError)
    assert issubclass(error, collector_errors.CollectorError)


def test_malformed_input_is_a_malformed_payload_and_a_value_error() -> None:
    for error in (errors.MalformedBlock, errors.RegistryError, errors.LabelError):
        assert issubclass(error, collector_errors.MalformedPayload)
        assert issubclass(error, ValueError)


def test_an_unreachable_source_is_the_shared_source_unavailable() -> None:
    assert issubclass(errors.SourceUnavailable, collector_errors.SourceUnavailable)
    assert not issubclass(errors.BlockNotFound, collector_errors.SourceUnavailable)
