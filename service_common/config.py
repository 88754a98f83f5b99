"""Helpers for reading a service's configuration from the environment, failing fast and clearly."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True)
class Variable:
    """One environment variable a service reads: its name, its default as text, what it means.

    The declaration is what the reading functions below take, so the default a service uses and the
    default its ``--help`` (and ``.env.example``) shows are one value. ``default`` is the text an unset
    variable stands for (``""``: unset means off, none, or a value computed at start, said in
    ``meaning``); ``required`` ones have no default at all.
    """

    name: str
    default: str
    meaning: str
    required: bool = False


class Variables:
    """The variables one part of a service reads, in the order declared; groups can include others."""

    def __init__(self, *included: Variable | Variables) -> None:
        self._variables: dict[str, Variable] = {}
        self.include(*included)

    def declare(self, name: str, default: str, meaning: str, *, required: bool = False) -> Variable:
        """Declares (and returns) a variable of this group."""
        return self._add(Variable(name, default, meaning, required))

    def include(self, *included: Variable | Variables) -> None:
        """Adds variables declared elsewhere (shared ones), or all of another group's."""
        for item in included:
            for variable in [item] if isinstance(item, Variable) else item:
                self._add(variable)

    def _add(self, variable: Variable) -> Variable:
        known = self._variables.get(variable.name)
        if known is not None and known != variable:
            raise ValueError(f"{variable.name} is declared twice, differently: {known} and {variable}")
        self._variables[variable.name] = variable
        return variable

    def __getitem__(self, name: str) -> Variable:
        return self._variables[name]

    def __iter__(self) -> Iterator[Variable]:
        return iter(self._variables.values())

    def __len__(self) -> int:
        return len(self._variables)


def _raw(env: Mapping[str, str], variable: Variable) -> str:
    return env.get(variable.name, "").strip() or variable.default


def read_str(env: Mapping[str, str], variable: Variable) -> str:
    """The variable's value with surrounding blanks removed, or its default when unset or blank."""
    return _raw(env, variable)


def read_optional_str(env: Mapping[str, str], variable: Variable) -> str | None:
    """The variable's value with surrounding blanks removed, or ``None`` when unset or blank."""
    return _raw(env, variable) or None


def read_int(env: Mapping[str, str], variable: Variable, *, minimum: int, maximum: int) -> int:
    """The variable as an integer within ``[minimum, maximum]``, its default when unset.

    Raises:
        ConfigError: the value is not an integer or is out of range.
    """
    name = variable.name
    raw = _raw(env, variable)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def read_float(env: Mapping[str, str], variable: Variable, *, minimum: float, maximum: float) -> float:
    """The variable as a number within ``[minimum, maximum]``, its default when unset.

    Raises:
        ConfigError: the value is not a number or is out of range.
    """
    name = variable.name
    raw = _raw(env, variable)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def read_port(env: Mapping[str, str], variable: Variable) -> int:
    """A TCP port; 0 asks the operating system for a free one (tests and the one-command start use it)."""
    return read_int(env, variable, minimum=0, maximum=65535)


def read_choice(env: Mapping[str, str], variable: Variable, choices: tuple[str, ...]) -> str:
    """The variable's value, lower-cased, which must be one of ``choices``."""
    value = read_str(env, variable).lower()
    if value not in choices:
        raise ConfigError(variable.name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


ANY_ORIGIN = "*"
# The seed frontend's development server.
DEFAULT_ALLOWED_ORIGIN = "http://localhost:3000"


def read_bool(env: Mapping[str, str], variable: Variable) -> bool:
    """The variable as a boolean: true/false or 1/0, its default when unset."""
    value = read_choice(env, variable, ("true", "false", "1", "0"))
    return value in ("true", "1")


# Read by the socket gateway and the GraphQL API alike.
ALLOWED_ORIGIN = Variable(
    "ALLOWED_ORIGIN",
    DEFAULT_ALLOWED_ORIGIN,
    "page origins allowed to connect, comma-separated (* allows any: demos only)",
)
INGEST_TARGET = Variable("INGEST_TARGET", "127.0.0.1:50051", "host:port of the ingest service")
RETENTION_DAYS = Variable(
    "VIEWER_ANALYTICS_RETENTION_DAYS", "90", "days snapshots are kept (and the farthest back ALL reaches)"
)


def read_allowed_origins(env: Mapping[str, str]) -> tuple[str, ...]:
    """``ALLOWED_ORIGIN``: the browser origins every public service accepts, comma-separated.

    ``*`` (any origin, for demos) means the same for the socket gateway and the GraphQL API, which
    read the same variable; naming the frontend's origins is the production setting.

    Raises:
        ConfigError: an entry is neither ``*`` nor an http(s) origin.
    """
    raw = read_str(env, ALLOWED_ORIGIN)
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        if origin != ANY_ORIGIN and not origin.startswith(("http://", "https://")):
            raise ConfigError("ALLOWED_ORIGIN", f"expected http(s)://host[:port] or *, got {origin!r}")
    return origins
