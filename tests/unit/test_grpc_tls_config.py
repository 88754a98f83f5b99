"""The TLS variables of the internal gRPC hop: read once at start by every service, refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphql_api.config import GraphQLConfig
from ingest_service.config import IngestConfig
from service_common.config import ConfigError
from service_common.grpc_tls import is_loopback_host, read_client_tls, read_server_tls
from socket_gateway.config import GatewayConfig

KEY = "a-valid-internal-key-123"
JWT_SECRET = "a-jwt-secret-of-at-least-32-characters"
CERT_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "cert.pem").write_bytes(CERT_PEM)
    (tmp_path / "key.pem").write_bytes(KEY_PEM)
    (tmp_path / "not-pem.txt").write_text("hello")
    return {name: str(tmp_path / name) for name in ("cert.pem", "key.pem", "not-pem.txt")}


def test_without_tls_variables_everything_stays_plaintext() -> None:
    """No TLS variable means no TLS anywhere, as before the settings existed."""
    assert IngestConfig.from_env({"INTERNAL_API_KEY": KEY}).tls is None
    assert GatewayConfig.from_env({"INTERNAL_API_KEY": KEY}).ingest_tls is None
    assert (
        GraphQLConfig.from_env({"INTERNAL_API_KEY": KEY, "GRAPHQL_JWT_SECRET": JWT_SECRET}).ingest_tls is None
    )


def test_the_files_are_read_at_start(pem_files: dict[str, str]) -> None:
    """Each service holds the PEM bytes from its configuration, read when the configuration is built;
    the private key never appears in the configuration's repr."""
    ingest = IngestConfig.from_env(
        {
            "INTERNAL_API_KEY": KEY,
            "INGEST_TLS_CERT_FILE": pem_files["cert.pem"],
            "INGEST_TLS_KEY_FILE": pem_files["key.pem"],
        }
    )
    assert ingest.tls is not None
    assert (ingest.tls.certificate_chain, ingest.tls.private_key) == (CERT_PEM, KEY_PEM)
    assert "PRIVATE KEY" not in repr(ingest)

    client_env = {
        "INTERNAL_API_KEY": KEY,
        "GRAPHQL_JWT_SECRET": JWT_SECRET,
        "INGEST_TLS_CA_FILE": pem_files["cert.pem"],
        "INGEST_TLS_SERVER_NAME": "ingest.internal",
    }
    for tls in (GatewayConfig.from_env(client_env).ingest_tls, GraphQLConfig.from_env(client_env).ingest_tls):
        assert tls is not None
        assert (tls.root_certificates, tls.server_name) == (CERT_PEM, "ingest.internal")


@pytest.mark.parametrize(
    ("variables", "named", "problem"),
    [
        (
            {"INGEST_TLS_CERT_FILE": "cert.pem"},
            "INGEST_TLS_KEY_FILE",
            "is required when INGEST_TLS_CERT_FILE",
        ),
        ({"INGEST_TLS_KEY_FILE": "key.pem"}, "INGEST_TLS_CERT_FILE", "is required when INGEST_TLS_KEY_FILE"),
        (
            {"INGEST_TLS_CERT_FILE": "missing.pem", "INGEST_TLS_KEY_FILE": "key.pem"},
            "INGEST_TLS_CERT_FILE",
            "cannot read",
        ),
        (
            {"INGEST_TLS_CERT_FILE": "cert.pem", "INGEST_TLS_KEY_FILE": "not-pem.txt"},
            "INGEST_TLS_KEY_FILE",
            "holds no PEM",
        ),
    ],
    ids=["cert-without-key", "key-without-cert", "unreadable-cert", "key-not-pem"],
)
def test_server_settings_are_refused_naming_the_variable(
    pem_files: dict[str, str], variables: dict[str, str], named: str, problem: str
) -> None:
    """Half a TLS setting, or a file that cannot be used, stops the ingest service at start."""
    env = {name: pem_files.get(value, value) for name, value in variables.items()}
    with pytest.raises(ConfigError, match=problem) as refused:
        read_server_tls(env)
    assert refused.value.variable == named


@pytest.mark.parametrize(
    ("variables", "named", "problem"),
    [
        ({"INGEST_TLS_CA_FILE": "missing.pem"}, "INGEST_TLS_CA_FILE", "cannot read"),
        ({"INGEST_TLS_CA_FILE": "not-pem.txt"}, "INGEST_TLS_CA_FILE", "holds no PEM"),
        (
            {"INGEST_TLS_SERVER_NAME": "ingest.internal"},
            "INGEST_TLS_SERVER_NAME",
            "without INGEST_TLS_CA_FILE",
        ),
    ],
    ids=["unreadable-ca", "ca-not-pem", "server-name-without-ca"],
)
def test_client_settings_are_refused_naming_the_variable(
    pem_files: dict[str, str], variables: dict[str, str], named: str, problem: str
) -> None:
    """A CA file that cannot be used, or a server name with nothing to check it, stops a client at start."""
    env = {name: pem_files.get(value, value) for name, value in variables.items()}
    with pytest.raises(ConfigError, match=problem) as refused:
        read_client_tls(env)
    assert refused.value.variable == named


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("ingest.internal", False),
    ],
)
def test_which_listening_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    """Plaintext is warned about only where the port can be reached from other machines."""
    assert is_loopback_host(host) is loopback
