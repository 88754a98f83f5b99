"""The README's figures that follow from the code's defaults say what the defaults give."""

from __future__ import annotations

from pathlib import Path

from socket_gateway.config import VARIABLES as GATEWAY_VARIABLES

README = Path(__file__).resolve().parents[2] / "README.md"


def test_a_killed_node_leaves_the_counts_within_a_lease_and_a_heartbeat() -> None:
    # A node renews its lease every third of it (socket_gateway/cluster.py), so one killed just after
    # renewing is reaped by the next heartbeat of another node after its lease ran out: lease x 4/3.
    lease = float(GATEWAY_VARIABLES["GATEWAY_NODE_LEASE_SECONDS"].default)
    text = " ".join(README.read_text().split())
    assert (
        f"within its lease and one heartbeat, lease x 4/3: {lease * 4 / 3:.1f} s with the default "
        f"`GATEWAY_NODE_LEASE_SECONDS` of {lease:g} s"
    ) in text
    assert "within its lease, `GATEWAY_NODE_LEASE_SECONDS`" not in text
