"""Optional TLS on the internal gRPC hops: the one place that binds their ports and opens channels to them.

Two hops: to the ingest service (``INGEST_TLS_*``, its clients are the gateways and the GraphQL API) and
to the gateways' live count port (``GATEWAY_GRPC_TLS_*``, its client is the GraphQL API). Without TLS
settings a hop stays plaintext, as on one machine where it never leaves loopback. With them its server
serves TLS only and the clients verify its certificate against the CA they are given, so the internal
key never crosses a network in the clear.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from service_common.config import ConfigError, Variable, Variables, read_optional_str
from service_common.service_process import ensure_port_free

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerTlsVariables:
    """The two variables that give one gRPC server its certificate chain and key (both or neither)."""

    cert_file: Variable
    key_file: Variable

    @property
    def group(self) -> Variables:
        return Variables(self.cert_file, self.key_file)


@dataclass(frozen=True)
class ClientTlsVariables:
    """The variables that make a client verify one server's certificate: its CA, and the name to check."""

    ca_file: Variable
    server_name: Variable

    @property
    def group(self) -> Variables:
        return Variables(self.ca_file, self.server_name)


def server_tls_variables(prefix: str) -> ServerTlsVariables:
    """``{prefix}_TLS_CERT_FILE`` and ``{prefix}_TLS_KEY_FILE``."""
    key_name = f"{prefix}_TLS_KEY_FILE"
    return ServerTlsVariables(
        Variable(
            f"{prefix}_TLS_CERT_FILE",
            "",
            f"PEM certificate chain: the gRPC port serves TLS only (with {key_name})",
        ),
        Variable(key_name, "", f"PEM private key of {prefix}_TLS_CERT_FILE"),
    )


def client_tls_variables(prefix: str, server: str, target_variable: str) -> ClientTlsVariables:
    """``{prefix}_TLS_CA_FILE`` and ``{prefix}_TLS_SERVER_NAME``, for a client of ``server``."""
    return ClientTlsVariables(
        Variable(
            f"{prefix}_TLS_CA_FILE",
            "",
            f"PEM of the CA of {server}'s certificate: TLS to it (unset: plaintext)",
        ),
        Variable(
            f"{prefix}_TLS_SERVER_NAME",
            "",
            f"the name its certificate is checked against (unset: {target_variable}'s host)",
        ),
    )


INGEST_SERVER_TLS = server_tls_variables("INGEST")
INGEST_CLIENT_TLS = client_tls_variables("INGEST", "the ingest service", "INGEST_TARGET")
# The gateway's internal port (LiveCountService), which the GraphQL API reads live counts from.
GATEWAY_GRPC_SERVER_TLS = server_tls_variables("GATEWAY_GRPC")
GATEWAY_GRPC_CLIENT_TLS = client_tls_variables(
    "GATEWAY_GRPC", "the gateways' live count port", "GATEWAY_GRPC_TARGET"
)
SERVER_TLS_VARIABLES = INGEST_SERVER_TLS.group
CLIENT_TLS_VARIABLES = INGEST_CLIENT_TLS.group


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


def read_server_tls(
    env: Mapping[str, str], variables: ServerTlsVariables = INGEST_SERVER_TLS
) -> ServerTls | None:
    """The certificate and key files (``INGEST_TLS_*`` by default): both for TLS, neither for plaintext.

    Raises:
        ConfigError: only one of the two is set, or a file cannot be read or holds no PEM.
    """
    cert_name, key_name = variables.cert_file.name, variables.key_file.name
    cert_path = read_optional_str(env, variables.cert_file)
    key_path = read_optional_str(env, variables.key_file)
    if cert_path is None and key_path is None:
        return None
    if key_path is None:
        raise ConfigError(key_name, f"is required when {cert_name} is set")
    if cert_path is None:
        raise ConfigError(cert_name, f"is required when {key_name} is set")
    return ServerTls(
        certificate_chain=_read_pem(cert_path, cert_name),
        private_key=_read_pem(key_path, key_name),
    )


def read_client_tls(
    env: Mapping[str, str], variables: ClientTlsVariables = INGEST_CLIENT_TLS
) -> ClientTls | None:
    """The CA file and server name (``INGEST_TLS_*`` by default): TLS to that server, or ``None``.

    Raises:
        ConfigError: the CA file cannot be read or holds no PEM, or a server name is set without a CA.
    """
    ca_name = variables.ca_file.name
    ca_path = read_optional_str(env, variables.ca_file)
    server_name = read_optional_str(env, variables.server_name)
    if ca_path is None:
        if server_name is not None:
            raise ConfigError(variables.server_name.name, f"has no effect without {ca_name}")
        return None
    return ClientTls(_read_pem(ca_path, ca_name), server_name)


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
            INGEST_SERVER_TLS.cert_file.name,
            INGEST_SERVER_TLS.key_file.name,
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
