"""The target file: how to start a WebSocket server under test and how to watch it.

A target file (YAML, checked against ``target.schema.json``) gives the start command with
placeholders (or the ``url`` of a server already running, on a loopback address), the WebSocket
path, the readiness check, the log format, the metrics endpoint, the feed and the database.
``load_target`` reads and checks one; ``harness.target.Target`` runs it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from harness.dialects import Dialect, DialectError, make_dialect
from harness.errors import HarnessError
from harness.promexpr import parse_expr

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGETS_DIR = Path(__file__).resolve().parent / "targets"
# Params a scenario may give any target: the harness applies them itself, not the target's command.
# nofile: the open-file limit (soft and hard) of a target process the harness starts.
HARNESS_PARAMS = frozenset({"nofile"})
SCHEMA = json.loads((Path(__file__).parent / "target.schema.json").read_text(encoding="utf-8"))

BUILTIN_PLACEHOLDERS = ("python", "host", "port", "workdir")
PATH_PLACEHOLDERS = ("workdir",)  # all that feed files and the database path may use
EVENT_PLACEHOLDERS = ("id", "n", "t", "node")  # what a feed's templates may use
FEED_ARGV_PLACEHOLDERS = ("python", "host", "port", "workdir")
DEFAULT_ID_FIELD = "Piece ID"
DEFAULT_LEVEL_REGEX = r"\b(?P<level>DEBUG|INFO|WARN(?:ING)?|ERROR|CRITICAL|FATAL|PANIC)\b"
RAW_LEVEL = "RAW"

DEFAULT_SEMANTICS = {"gaps_after_reconnect": "forbidden"}

_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_HINT = "see harness/targets/monitor.yaml for a complete target file"


class TargetError(HarnessError):
    """A target file that cannot be used, or a target process that did not do what was asked."""


@dataclass(frozen=True)
class ReadySpec:
    http: str | None = None  # a path answered with 2xx once ready
    tcp: bool = False  # or: the port accepts connections
    timeout: float = 15.0


@dataclass(frozen=True)
class LogSpec:
    format: str = "text"  # json or text
    level_field: str = "level"
    message_field: str = "msg"
    level_regex: str = DEFAULT_LEVEL_REGEX

    def parse(self, line: str) -> tuple[str, str | None]:
        """The line's level (RAW when it is not a log record) and, for JSON records, its message."""
        if self.format == "json":
            return self._parse_json(line)
        match = re.search(self.level_regex, line)
        if match is None or not match.group("level"):
            return RAW_LEVEL, None
        return match.group("level").upper(), None

    def _parse_json(self, line: str) -> tuple[str, str | None]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            return RAW_LEVEL, None
        level = record.get(self.level_field) if isinstance(record, dict) else None
        if not isinstance(level, str | int) or isinstance(level, bool):
            return RAW_LEVEL, None
        message = record.get(self.message_field)
        return str(level).upper(), message if isinstance(message, str) else None


@dataclass(frozen=True)
class MetricsSpec:
    path: str = "/metrics"
    clients: str | None = None  # the gauge giving the registry size
    resources: tuple[str, ...] = ()  # gauges of per-client resources (tasks, objects): the leaks check

    def __post_init__(self) -> None:
        object.__setattr__(self, "resources", tuple(self.resources or ()))


@dataclass(frozen=True)
class FeedSpec:
    """How events go in: ``kind`` and that kind's fields (the others keep their defaults)."""

    kind: str
    files: dict[str, str] = field(default_factory=dict)  # storagenode_log: node name: file template
    id_field: str = DEFAULT_ID_FIELD  # storagenode_log
    file: str | None = None  # line: file template ({workdir} only)
    template: str | None = None  # line
    nodes: list[str] = field(default_factory=lambda: ["n1"])  # line, http, command
    method: str = "POST"  # http
    path: str | None = None  # http: on the target
    url: str | None = None  # http: or a loopback URL
    headers: dict[str, str] = field(default_factory=dict)  # http
    body: Any = None  # http: None is {"id": "{id}", "n": "{n}", "t": "{t}", "node": "{node}"}
    status: int | list[int] = 200  # http
    batch: int | None = None  # http, command: None is one event a request, all of a tick a run
    batch_body: Any = None  # http: a batched request's body, "{events}" where the list goes
    argv: list[str] = field(default_factory=list)  # command
    timeout: float = 5.0  # http, command

    def paths(self, workdir: Path) -> dict[str, Path]:
        """The files the target reads, by name (none for http and command)."""
        if self.kind == "line" and self.file is not None:
            return {"line": workdir_path(self.file, workdir)}
        return {node: workdir_path(template, workdir) for node, template in self.files.items()}


@dataclass(frozen=True)
class PersistenceSpec:
    sqlite: str  # file template ({workdir} only)
    query: str  # one fed id a row, in the first column

    def db_path(self, workdir: Path) -> Path:
        return workdir_path(self.sqlite, workdir)


@dataclass(frozen=True)
class StatsSpec:
    """Where the server says how many events it took in: a message of type ``message`` (asked for with
    ``request``, or sent on connect), the total at the dotted path ``total``, per node at ``nodes``."""

    message: str
    total: str
    type_key: str = "type"
    request: str | None = None
    nodes: str | None = None
    node_count: str | None = None


@dataclass(frozen=True)
class TargetSpec:
    name: str
    command: list[str] = field(default_factory=list)
    url: str | None = None  # a server already running: then no command
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ws_path: str = "/ws"
    ready: ReadySpec = field(default_factory=ReadySpec)
    logs: LogSpec = field(default_factory=LogSpec)
    metrics: MetricsSpec | None = None
    feed: FeedSpec | None = None
    persistence: PersistenceSpec | None = None
    stats: StatsSpec | None = None  # the server's own counts of what it took in
    # Overrides of the message shape (init_type, batch_type, seq, events, event_id, sent_at, epoch);
    # harness.dialects.MessageShape(**messages) reads the target's messages (the monitor dialect).
    messages: dict[str, str] = field(default_factory=dict)
    # The protocol (harness.dialects): {"name": ..., **options}; None: the monitor's, with ``messages``.
    dialect: dict[str, Any] | None = None
    path: Path | None = None  # the file it came from
    description: str = ""
    # What the server promises: gaps_after_reconnect ("forbidden" unless the file says "allowed").
    semantics: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SEMANTICS))
    # Environment variables set to a random token for the run when unset (shared by command and feed).
    generated_env: list[str] = field(default_factory=list)

    def make_dialect(self) -> Dialect:
        return make_dialect(self.dialect, self.messages)

    def with_params(self, params: Mapping[str, Any]) -> TargetSpec:
        """The spec with ``{param}`` placeholders in the dialect's options filled from ``params``."""
        if self.dialect is None:
            return self
        return replace(self, dialect=fill_params(self.dialect, params))

    def ensure_generated_env(self) -> None:
        """Give each of ``generated_env`` a fresh random token unless the environment has one."""
        for name in self.generated_env:
            if not os.environ.get(name):
                os.environ[name] = secrets.token_hex(16)

    @property
    def cwd(self) -> Path:
        """Where the command runs: the target file's directory."""
        return self.path.parent if self.path is not None else Path.cwd()

    @property
    def external(self) -> bool:
        """A server the harness attaches to (``url``) rather than starts."""
        return self.url is not None


def load_target(path: str | Path) -> TargetSpec:
    """Read and check a target file; a problem raises TargetError naming the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetError(f"target file {path} does not exist", hint=f"bundled targets are in {TARGETS_DIR}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read target file {path}: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TargetError(f"{path}: not valid YAML: {exc}", hint=_HINT) from exc
    return parse_target(raw, str(path), path.resolve())


def bundled_monitor() -> TargetSpec:
    """The reference target: the monitor in this repository."""
    return load_target(TARGETS_DIR / "monitor.yaml")


def parse_target(raw: Any, source: str, path: Path | None = None) -> TargetSpec:
    """Check a loaded document against the schema and the placeholder rules, and build the spec."""
    errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(raw), key=lambda e: list(e.absolute_path))
    if errors:
        raise TargetError("\n".join(f"{source}: {_where(e.absolute_path)}: {e.message}" for e in errors[:10]), _HINT)
    problems = _semantic_problems(raw)
    if problems:
        raise TargetError("\n".join(f"{source}: {where}: {problem}" for where, problem in problems), _HINT)
    return _build(raw, path)


def _where(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _semantic_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    params = raw.get("params") or {}
    problems = [(f"params.{k}", f"{k!r} is a built-in placeholder") for k in params if k in BUILTIN_PLACEHOLDERS]
    known = (*BUILTIN_PLACEHOLDERS, *params)
    problems += _command_or_url(raw)
    problems += _placeholder_problems("command", raw.get("command") or [], known)
    problems += _placeholder_problems("env", raw.get("env") or {}, known)
    problems += _feed_problems(raw.get("feed") or {})
    persistence = raw.get("persistence") or {}
    problems += _placeholder_problems("persistence", {"sqlite": persistence.get("sqlite", "")}, PATH_PLACEHOLDERS)
    stats = raw.get("stats") or {}
    if ("nodes" in stats) != ("node_count" in stats):
        problems.append(("stats.node_count", "give nodes and node_count together"))
    problems += _ready_problems(raw.get("ready") or {})
    problems += _logs_problems(raw.get("logs") or {})
    try:
        make_dialect(fill_params(raw.get("dialect"), params), raw.get("messages"))
    except (DialectError, TypeError, ValueError) as exc:
        problems.append(("dialect", str(exc)))
    clients = (raw.get("metrics") or {}).get("clients")
    try:
        if clients:
            parse_expr(clients)
    except ValueError as exc:
        problems.append(("metrics.clients", str(exc)))
    return problems


def fill_params(value: Any, params: Mapping[str, Any]) -> Any:
    """``value`` with ``{param}`` replaced in its strings; a string that is one placeholder alone takes
    the param's value with its type (``"{heartbeat}"`` gives a number)."""
    if isinstance(value, str):
        whole = _PLACEHOLDER_RE.fullmatch(value)
        return params[whole[1]] if whole and whole[1] in params else expand(value, params)
    if isinstance(value, dict):
        return {k: fill_params(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_params(v, params) for v in value]
    return value


def _placeholder_problems(where: str, values: list[Any] | dict[str, Any], known: tuple[str, ...]) -> list:
    items = enumerate(values) if isinstance(values, list) else values.items()
    problems = []
    for key, value in items:
        for name in _PLACEHOLDER_RE.findall(str(value)):
            if name not in known:
                spot = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}"
                problems.append((spot, f"unknown placeholder {{{name}}} (known: {', '.join(sorted(known))})"))
    return problems


def _command_or_url(raw: dict[str, Any]) -> list[tuple[str, str]]:
    if "command" in raw and "url" in raw:
        return [("url", "give command (a server the harness starts) or url (one already running), not both")]
    if "command" not in raw and "url" not in raw:
        return [("command", "give command (a server the harness starts) or url (one already running)")]
    if "url" in raw:
        return [("url", problem)] if (problem := loopback_problem(raw["url"])) else []
    return []


def _feed_problems(feed: dict[str, Any]) -> list[tuple[str, str]]:
    problems = _placeholder_problems("feed.files", feed.get("files", {}), PATH_PLACEHOLDERS)
    problems += _placeholder_problems("feed", {"file": feed.get("file", "")}, PATH_PLACEHOLDERS)
    problems += _placeholder_problems("feed", {"template": feed.get("template", "")}, EVENT_PLACEHOLDERS)
    problems += _placeholder_problems("feed.argv", feed.get("argv", []), FEED_ARGV_PLACEHOLDERS)
    body = " ".join(_strings_in(feed.get("body"), []))
    problems += _placeholder_problems("feed", {"body": body}, EVENT_PLACEHOLDERS)
    if "batch_body" in feed and "{events}" not in _strings_in(feed["batch_body"], []):
        problems.append(("feed.batch_body", 'needs the string "{events}" where the list of events goes'))
    if "batch_body" in feed and "batch" not in feed:
        problems.append(("feed.batch_body", "only with batch"))
    if feed.get("kind") == "http":
        if ("path" in feed) == ("url" in feed):
            problems.append(("feed.path", "give path (on the target) or url (a loopback URL), one of them"))
        elif "url" in feed and (problem := loopback_problem(feed["url"])):
            problems.append(("feed.url", problem))
    return problems


def _strings_in(value: Any, out: list[str]) -> list[str]:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            _strings_in(item, out)
    return out


def loopback_problem(url: str) -> str | None:
    """Why ``url`` is not on this machine's loopback, or None: the harness never sends traffic off it."""
    try:
        host = urlsplit(url).hostname
        port = urlsplit(url).port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if not host or port is None:
        return f"{url!r} needs a host and a port"
    if host == "localhost":
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host!r} is not a loopback address: give 127.0.0.1, ::1 or localhost (traffic stays on this machine)"
    if not address.is_loopback:
        return f"{host} is not a loopback address: the harness sends no traffic off this machine"
    return None


def loopback_host(url: str) -> tuple[str, int]:
    """The (host, port) of a checked loopback URL, ``localhost`` as 127.0.0.1."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return ("127.0.0.1" if parts.hostname == "localhost" else parts.hostname), parts.port


def _ready_problems(ready: dict[str, Any]) -> list[tuple[str, str]]:
    if "http" in ready and "tcp" in ready:
        return [("ready", "give either http (a path) or tcp: true, not both")]
    if ready and "http" not in ready and "tcp" not in ready:
        return [("ready", "give http (a path answered with 2xx when ready) or tcp: true")]
    return []


def _logs_problems(logs: dict[str, Any]) -> list[tuple[str, str]]:
    if logs.get("format") == "json":
        return [("logs.level_regex", "only for format: text")] if "level_regex" in logs else []
    if "level_field" in logs or "message_field" in logs:
        return [("logs", "level_field and message_field are only for format: json")]
    if "level_regex" not in logs:
        return []
    try:
        pattern = re.compile(logs["level_regex"])
    except re.error as exc:
        return [("logs.level_regex", f"does not compile: {exc}")]
    if "level" not in pattern.groupindex:
        return [("logs.level_regex", "needs a named group (?P<level>...)")]
    return []


def _build(raw: dict[str, Any], path: Path | None) -> TargetSpec:
    def optional(key: str, cls: type) -> Any:
        value = raw.get(key)
        return None if value is None else cls(**value)

    return TargetSpec(
        name=raw["name"],
        command=list(raw.get("command") or []),
        url=raw.get("url"),
        params=dict(raw.get("params") or {}),
        env={k: _text(v) for k, v in (raw.get("env") or {}).items()},
        ws_path=raw.get("ws_path", _url_path(raw.get("url")) or "/ws"),
        ready=_ready(raw.get("ready")),
        logs=LogSpec(**raw.get("logs", {})),
        metrics=optional("metrics", MetricsSpec),
        feed=optional("feed", FeedSpec),
        persistence=optional("persistence", PersistenceSpec),
        stats=optional("stats", StatsSpec),
        messages=dict(raw.get("messages") or {}),
        dialect=_dialect(raw.get("dialect")),
        path=path,
        description=raw.get("description", ""),
        semantics={**DEFAULT_SEMANTICS, **(raw.get("semantics") or {})},
        generated_env=list(raw.get("generated_env") or []),
    )


def _url_path(url: str | None) -> str | None:
    """The WebSocket path a ``url`` names, if it names one."""
    path = urlsplit(url).path if url else ""
    return path if path not in ("", "/") else None


def _dialect(raw: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {"name": raw} if isinstance(raw, str) else dict(raw)


def _ready(raw: dict[str, Any] | None) -> ReadySpec:
    """Without a ready section, a target is ready when its port accepts connections."""
    raw = raw or {}
    return ReadySpec(http=raw.get("http"), tcp="http" not in raw, timeout=raw.get("timeout", 15.0))


def _text(value: Any) -> str:
    """A placeholder value as it goes on a command line (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expand(template: str, values: Mapping[str, Any]) -> str:
    """Replace ``{name}`` placeholders; anything else, braces included, stays as written."""
    return _PLACEHOLDER_RE.sub(lambda m: _text(values[m[1]]) if m[1] in values else m[0], template)


def workdir_path(template: str, workdir: Path) -> Path:
    path = Path(expand(template, {"workdir": workdir}))
    return path if path.is_absolute() else workdir / path
