"""Secrets stay with their owner: a private state root, and credentials kept out of output.

Everything the pipeline writes (the lake, the SQLite databases of Airflow, MLflow and
Feast, Airflow's passwords file and configuration) lives under the state root, which
`private_state_root` makes enterable by its owner only (0700). The processes that write
there run with `PRIVATE_UMASK`, so what they create is the owner's alone too (0600 files,
0700 directories).

What is shown or logged goes through `redact_url` / `redacted_settings`: passwords in
URLs, the path and query of web URLs (a webhook's token), and `password=`-style pairs
(Feast's Redis connection string) become `***`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from pipelines.errors import PermanentError
from pipelines.settings import Settings

PRIVATE_UMASK = 0o077
PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
REDACTED = "***"
WEB_SCHEMES = ("http", "https")
# A setting whose name says it holds a secret is redacted whole.
SECRET_NAME = re.compile(r"password|passwd|secret|token|api_?key|credential", re.IGNORECASE)
# `name=value` pairs that carry a secret: URL queries, Redis connection strings.
SECRET_PAIR = re.compile(
    r"\b(password|passwd|pwd|secret|token|api_?key|access_?key|auth)=[^,&;\s]*", re.IGNORECASE
)


def private_state_root(state_root: Path) -> None:
    """Create the state root if missing and make it enterable by its owner only (0700)."""
    state_root.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(state_root.stat().st_mode)
    if mode != PRIVATE_DIRECTORY_MODE:
        try:
            state_root.chmod(PRIVATE_DIRECTORY_MODE)
        except PermissionError as error:
            raise PermanentError(
                f"the state root {state_root} is open to other users (mode {mode:o}) and "
                "belongs to someone else: set MLOPS_STATE_ROOT to a folder of your own"
            ) from error


def open_private(path: Path) -> BinaryIO:
    """Open a file for writing from its start, readable by its owner only, whatever the
    process's umask (e.g. a log that may hold a generated password)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    os.fchmod(descriptor, PRIVATE_FILE_MODE)
    return os.fdopen(descriptor, "wb")


def redact_url(url: str) -> str:
    """The URL without its secrets: its password; for a web URL (a webhook's), its user,
    path and query, which carry its token; `password=`-style pairs of anything else."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return REDACTED
    if not parts.scheme or not parts.netloc:  # not a URL: a path, `host:port,password=...`
        return _redact_pairs(url)
    user, _, host = parts.netloc.rpartition("@")
    if parts.scheme.lower() in WEB_SCHEMES:
        netloc = f"{REDACTED}@{host}" if user else host
        hidden = parts.path.strip("/") or parts.query or parts.fragment
        return urlunsplit((parts.scheme, netloc, f"/{REDACTED}" if hidden else parts.path, "", ""))
    if password is not None:
        user = f"{user.partition(':')[0]}:{REDACTED}"
    netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc, query=_redact_pairs(parts.query)))


def url_host(url: str) -> str:
    """The host a URL names, to say where something went without saying the URL."""
    try:
        return urlsplit(url).hostname or "a URL without a host"
    except ValueError:
        return "an unparsable URL"


def redacted_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-ready data, every credential in them replaced by `***`."""
    return _redacted(json.loads(settings.model_dump_json()), "")


def _redacted(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return {key: _redacted(item, key) for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, name) for item in value]
    if isinstance(value, str) and value:
        return REDACTED if SECRET_NAME.search(name) else redact_url(value)
    return value


def _redact_pairs(text: str) -> str:
    return SECRET_PAIR.sub(lambda match: f"{match.group(1)}={REDACTED}", text)


def serving_token(settings: Settings) -> str:
    """The bearer token of the online scoring service: the setting, else the one in
    `settings.serving_token_file`, generated there (0600) on first use."""
    if settings.serving.token:
        return settings.serving.token
    path = settings.serving_token_file
    if not path.exists():
        private_state_root(settings.state_root)
        path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open_private(aside) as handle:
            handle.write(secrets.token_urlsafe(32).encode())
        try:
            os.link(aside, path)  # never over a token another process made meanwhile
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    return path.read_text().strip()
