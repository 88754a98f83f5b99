"""One way to run a service process: a start-up failure is one line naming its cause, never a traceback.

Every service's ``main()`` goes through :func:`run_service`: ``--help`` prints the usage and every
variable the service reads with its default (from the declarations its configuration reads with) and
exits 0 without reading the configuration; a ``.env`` file (or the one ``ENV_FILE`` names) fills in
the variables the environment does not set; an invalid variable prints one line naming
it and exits 2; an address that cannot be listened on (a port in use) logs one line naming the port and
exits 2; the start-up failures a service declares (its store cannot be opened) log one line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

from dotenv import dotenv_values

from service_common.config import ConfigError, Variable, Variables

logger = logging.getLogger(__name__)

ConfigT = TypeVar("ConfigT")

EXIT_START_FAILED = 1
EXIT_CONFIGURATION = 2
# The shell's convention for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class ListenError(Exception):
    """The service cannot listen on its configured address; the message names the port and the variable.

    Not an ``OSError``: the services treat an ``OSError`` at start as a fault of their files, and this is
    a fault of the configuration (or of another process holding the port).
    """

    def __init__(self, host: str, port: int, variable: str, problem: str) -> None:
        super().__init__(f"cannot listen on {host}:{port} ({variable}): {problem}")
        self.host = host
        self.port = port
        self.variable = variable


@contextmanager
def listen_errors(host: str, port: int, variable: str) -> Iterator[None]:
    """Turns an ``OSError`` inside the block, which only binds, into a :class:`ListenError`.

    Args:
        host: the configured listening host.
        port: the configured port.
        variable: the environment variable that sets ``port`` (named in the message).
    """
    try:
        yield
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise ListenError(host, port, variable, f"port {port} is already in use") from None
        raise ListenError(host, port, variable, error.strerror or str(error)) from None


def ensure_port_free(host: str, port: int) -> None:
    """Raises ``OSError`` (``EADDRINUSE``) when something already listens on ``host:port``.

    gRPC binds with ``SO_REUSEPORT`` by default, so a second server on a busy port starts and takes
    half the traffic; the ingest service turns that off, and checks first so that the refusal is its
    own line rather than gRPC core's. Port 0 (any free port) is never busy. Like gRPC, the probe sets
    ``SO_REUSEADDR``, so a port left in ``TIME_WAIT`` by a process that just stopped counts as free.
    Errors other than a busy port are left for the real bind to report.
    """
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return
    for family, kind, protocol, _, address in addresses:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise


ENV_FILE = Variable(
    "ENV_FILE",
    ".env",
    "file of NAME=value lines read at start (a missing .env is fine; a missing named file is an error)",
)


def _shown_default(variable: Variable) -> str:
    if variable.required:
        return " (required)"
    return variable.default


def help_text(name: str, description: str, variables: Variables) -> str:
    """What ``python -m <name> --help`` prints after the usage line."""
    lines = [
        description,
        "",
        "Configuration comes from the environment. Variables it does not set are read from the file",
        f"{ENV_FILE.name} names (default: {ENV_FILE.default} in the current directory); the environment",
        "wins over the file.",
        "",
        "Environment variables (NAME=default; empty: unset):",
    ]
    for variable in (*variables, ENV_FILE):
        lines.append(f"  {variable.name}={_shown_default(variable)}")
        lines.append(f"      {variable.meaning}")
    return "\n".join(lines)


def _parse_arguments(name: str, description: str, variables: Variables) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {name}",
        description=help_text(name, description, variables),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args()


def load_env_file(environ: MutableMapping[str, str]) -> None:
    """Adds the variables of the ``.env`` file (or ``ENV_FILE``'s) that ``environ`` does not set.

    Raises:
        ConfigError: ``ENV_FILE`` names a file that cannot be read.
    """
    named = environ.get(ENV_FILE.name, "").strip()
    path = named or ENV_FILE.default
    if not os.path.exists(path):
        if named:
            raise ConfigError(ENV_FILE.name, f"no such file: {path}")
        return
    try:
        values = dotenv_values(path)
    except OSError as error:
        raise ConfigError(ENV_FILE.name, f"cannot read {path}: {error.strerror or error}") from None
    for key, value in values.items():
        if value is not None:
            environ.setdefault(key, value)


def _fail(code: int, message: str, error: BaseException) -> NoReturn:
    logger.critical(message, extra={"error": str(error)})
    sys.exit(code)


def run_service(
    name: str,
    read_config: Callable[[Mapping[str, str]], ConfigT],
    apply_logging: Callable[[ConfigT], None],
    serve: Callable[[ConfigT], Coroutine[Any, Any, None]],
    *,
    description: str,
    variables: Variables,
    start_failures: Mapping[type[Exception], str] | None = None,
) -> None:
    """Answers ``--help``, or reads the configuration, configures logging and runs ``serve`` until it returns.

    Args:
        name: the service's module name, the prefix of a configuration error's line.
        read_config: builds the configuration from the environment; raises ``ConfigError``.
        apply_logging: configures logging from the configuration.
        serve: runs the service until it is asked to stop.
        description: one line saying what the service is, the start of its ``--help``.
        variables: every variable ``read_config`` reads, as declared where it reads them.
        start_failures: exception types that mean the service cannot start, each with the message
            logged (one line, exit 1); anything else is a defect and keeps its traceback.
    """
    _parse_arguments(name, description, variables)
    try:
        load_env_file(os.environ)
        config = read_config(os.environ)
    except ConfigError as error:
        # Logging is not configured yet: its format is part of what could not be read.
        print(f"{name}: configuration error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
    apply_logging(config)
    failures = tuple((start_failures or {}).items())
    try:
        asyncio.run(serve(config))
    except ConfigError as error:
        # Found only once the service starts (the outbox file of another running gateway).
        print(f"{name}: configuration error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIGURATION)
    except ListenError as error:
        _fail(EXIT_CONFIGURATION, f"Cannot start: {error}", error)
    except KeyboardInterrupt:
        # SIGINT before the service installed its stop handler: nothing was serving yet.
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:
        for kind, message in failures:
            if isinstance(error, kind):
                _fail(EXIT_START_FAILED, message, error)
        raise
