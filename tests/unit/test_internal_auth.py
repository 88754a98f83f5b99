"""The internal key ring: every configured key is accepted, anything else is not."""

from __future__ import annotations

import pytest

from service_common.internal_auth import InternalKeyRing, internal_key_metadata

KEYS = ("current-key-0123456789", "next-key-abcdefghijklmn")


@pytest.mark.parametrize("presented", [*KEYS, KEYS[0].encode()])
def test_each_configured_key_is_accepted(presented: str | bytes) -> None:
    assert InternalKeyRing(KEYS).accepts(presented)


@pytest.mark.parametrize(
    "presented", [None, "", KEYS[0][:-1], KEYS[0] + " ", KEYS[0].upper(), ",".join(KEYS)]
)
def test_other_values_are_refused(presented: str | None) -> None:
    assert not InternalKeyRing(KEYS).accepts(presented)


def test_a_ring_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        InternalKeyRing(())


def test_clients_send_the_key_in_the_seed_header() -> None:
    assert internal_key_metadata("k") == (("x-internal-request", "k"),)
