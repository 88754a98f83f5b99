"""The gateway's internal gRPC port (GATEWAY_GRPC_PORT, issue 18) at start: busy, the gateway refuses to
start in one line naming the variable, as for its Socket.IO port."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_service_start_failures import held_port, run_to_exit, service_env

__all__ = ["held_port"]


async def test_a_busy_grpc_port_stops_the_gateway_naming_it(held_port: int, tmp_path: Path) -> None:
    env = {**service_env("socket_gateway", tmp_path, GATEWAY_PORT="0"), "GATEWAY_GRPC_PORT": str(held_port)}
    code, lines = await run_to_exit("socket_gateway", env)
    assert code == 2, lines[-5:]
    naming = [line for line in lines if f"port {held_port} is already in use" in line]
    assert len(naming) == 1, lines
    assert "GATEWAY_GRPC_PORT" in naming[0]
    assert not any("Traceback" in line for line in lines), lines
