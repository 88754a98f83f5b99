"""Optional TLS on the internal gRPC hop: the one place that binds the ingest port and opens channels to it.

Without TLS settings everything stays plaintext, as on one machine where the hop never leaves loopback.
With them the ingest service serves TLS only and the clients verify its certificate against the CA they
are given, so the internal key never crosses a network in the clear.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from service_common.config import ConfigError, Variables, read_optional_str
from service_common.service_process import ensure_port_free

logger = logging.getLogger(__name__)

CERT_FILE_VARIABLE = "INGEST_TLS_CERT_FILE"
KEY_FILE_VARIABLE = "INGEST_TLS_KEY_FILE"
CA_FILE_VARIABLE = "INGEST_TLS_CA_FILE"
SERVER_NAME_VARIABLE = "INGEST_TLS_SERVER_NAME"
SERVER_TLS_VARIABLES = Variables()
_CERT_FILE = SERVER_TLS_VARIABLES.declare(
    CERT_FILE_VARIABLE, "", "PEM certificate chain: the gRPC port serves TLS only (with INGEST_TLS_KEY_FILE)"
)
_KEY_FILE = SERVER_TLS_VARIABLES.declare(KEY_FILE_VARIABLE, "", "PEM private key of INGEST_TLS_CERT_FILE")
CLIENT_TLS_VARIABLES = Variables()
_CA_FILE = CLIENT_TLS_VARIABLES.declare(
    CA_FILE_VARIABLE, "", "PEM of the CA of the ingest service's certificate: TLS to it (unset: plaintext)"
)
_SERVER_NAME = CLIENT_TLS_VARIABLES.declare(
    SERVER_NAME_VARIABLE, "", "the name its certificate is checked against (unset: INGEST_TARGET's host)"
)


@dataclass(frozen=True)
class ServerTls:
    """The ingest service's PEM certificate chain and private key, read at start."""

    certificate_chain: bytes
    # Kept out of repr so that printing a configuration never prints the key.
    private_key: bytes = field(repr=False)


@dataclass(frozen=True)
class ClientTls:
    """What a client trusts: the PEM of the CA that signed the ingest certificate, read at start.

    ``server_name``, when set, is the name the certificate is checked against instead of the
    target's host (for a target reached by an address the certificate does not name).
    """

    root_certificates: bytes = field(repr=False)
    server_name: str | None = None


def _read_pem(path: str, variable: str) -> bytes:
    """The file's bytes, read now so that a bad path stops the service at start, not at first use."""
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as error:
        raise ConfigError(variable, f"cannot read {path!r} ({error.strerror or error})") from None
    if b"-----BEGIN " not in content:
        raise ConfigError(variable, f"{path!r} holds no PEM block")
    return content


def read_server_tls(env: Mapping[str, str]) -> ServerTls | None:
    """``INGEST_TLS_CERT_FILE`` and ``INGEST_TLS_KEY_FILE``: both for TLS, neither for plaintext.

    Raises:
        ConfigError: only one of the two is set, or a file cannot be read or holds no PEM.
    """
    cert_path = read_optional_str(env, _CERT_FILE)
    key_path = read_optional_str(env, _KEY_FILE)
    if cert_path is None and key_path is None:
        return None
    if key_path is None:
        raise ConfigError(KEY_FILE_VARIABLE, f"is required when {CERT_FILE_VARIABLE} is set")
    if cert_path is None:
        raise ConfigError(CERT_FILE_VARIABLE, f"is required when {KEY_FILE_VARIABLE} is set")
    return ServerTls(
        certificate_chain=_read_pem(cert_path, CERT_FILE_VARIABLE),
        private_key=_read_pem(key_path, KEY_FILE_VARIABLE),
    )


def read_client_tls(env: Mapping[str, str]) -> ClientTls | None:
    """``INGEST_TLS_CA_FILE`` (and ``INGEST_TLS_SERVER_NAME``): TLS to the ingest service, or ``None``.

    Raises:
        ConfigError: the CA file cannot be read or holds no PEM, or a server name is set without a CA.
    """
    ca_path = read_optional_str(env, _CA_FILE)
    server_name = read_optional_str(env, _SERVER_NAME)
    if ca_path is None:
        if server_name is not None:
            raise ConfigError(SERVER_NAME_VARIABLE, f"has no effect without {CA_FILE_VARIABLE}")
        return None
    return ClientTls(_read_pem(ca_path, CA_FILE_VARIABLE), server_name)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a listening address) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # A name other than localhost may resolve to any interface.
        return False


def bind_server_port(
    server: grpc.aio.Server,
    host: str,
    port: int,
    tls: ServerTls | None,
    *,
    plaintext_warning: str | None = None,
) -> int:
    """Binds ``host:port`` with TLS when ``tls`` is given, plaintext otherwise; returns the bound port.

    The server must be built with ``("grpc.so_reuseport", 0)``: with gRPC's default a second server
    binds a port another one serves and the two split the traffic. ``plaintext_warning`` replaces the
    ingest service's line about plaintext beyond loopback, for another server.

    Raises:
        OSError: the address cannot be bound (``EADDRINUSE`` when another process listens on it).
    """
    address = f"{host}:{port}"
    ensure_port_free(host, port)
    if tls is None and not is_loopback_host(host) and plaintext_warning is not None:
        logger.warning(plaintext_warning, extra={"address": address})
    elif tls is None and not is_loopback_host(host):
        logger.warning(
            "The ingest service listens in plaintext beyond loopback: the internal key crosses the"
            " network in the clear (set %s and %s)",
            CERT_FILE_VARIABLE,
            KEY_FILE_VARIABLE,
            extra={"address": address},
        )
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            credentials = grpc.ssl_server_credentials([(tls.private_key, tls.certificate_chain)])
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as error:
        # grpc.aio reports every failed bind so, whatever the cause (gRPC core logs the cause itself).
        raise OSError(f"cannot listen on {address}: {error}") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    return int(bound)


def open_channel(
    target: str, tls: ClientTls | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A channel to the ingest service at ``target``: TLS trusting ``tls``'s CA, or plaintext without it.

    ``options`` are passed on unchanged; the TLS server name, when set, is added to them.
    """
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    channel_options = list(options)
    if tls.server_name is not None:
        channel_options.append(("grpc.ssl_target_name_override", tls.server_name))
    credentials = grpc.ssl_channel_credentials(root_certificates=tls.root_certificates)
    return grpc.aio.secure_channel(target, credentials, options=channel_options)
