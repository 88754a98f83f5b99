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
