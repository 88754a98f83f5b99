"""Helpers for reading a service's configuration from the environment, failing fast and clearly."""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def read_str(env: Mapping[str, str], name: str, default: str) -> str:
    """The variable's value with surrounding blanks removed, or ``default`` when unset or blank."""
    value = env.get(name, "").strip()
    return value or default


def read_optional_str(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value with surrounding blanks removed, or ``None`` when unset or blank."""
    value = env.get(name, "").strip()
    return value or None


def read_int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    """The variable as an integer within ``[minimum, maximum]``, or ``default`` when unset.

    Raises:
        ConfigError: the value is not an integer or is out of range.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def read_float(env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float) -> float:
    """The variable as a number within ``[minimum, maximum]``, or ``default`` when unset.

    Raises:
        ConfigError: the value is not a number or is out of range.
    """
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def read_port(env: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port; 0 asks the operating system for a free one (tests and the one-command start use it)."""
    return read_int(env, name, default, minimum=0, maximum=65535)


def read_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """The variable's value, lower-cased, which must be one of ``choices``."""
    value = read_str(env, name, default).lower()
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


ANY_ORIGIN = "*"
# The seed frontend's development server.
DEFAULT_ALLOWED_ORIGIN = "http://localhost:3000"


def read_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """The variable as a boolean: true/false or 1/0, ``default`` when unset."""
    value = read_choice(env, name, "true" if default else "false", ("true", "false", "1", "0"))
    return value in ("true", "1")


def read_allowed_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """``ALLOWED_ORIGIN``: the browser origins every public service accepts, comma-separated.

    ``*`` (any origin, for demos) means the same for the socket gateway and the GraphQL API, which
    read the same variable; naming the frontend's origins is the production setting.

    Raises:
        ConfigError: an entry is neither ``*`` nor an http(s) origin.
    """
    raw = read_str(env, "ALLOWED_ORIGIN", DEFAULT_ALLOWED_ORIGIN)
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        if origin != ANY_ORIGIN and not origin.startswith(("http://", "https://")):
            raise ConfigError("ALLOWED_ORIGIN", f"expected http(s)://host[:port] or *, got {origin!r}")
    return origins
