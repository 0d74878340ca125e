"""What a remote server says, made fit for our logs, ``lastError``, API answers and metrics.

Kubernetes, Argo Server and BTP put their own words into error answers, and
those words may quote what we sent them: an admission webhook that rejects the
synced BTP Secret may answer with its data, a proxy may echo the
``Authorization`` header. ``remote_message`` is the one place such text is made
safe before it becomes one of our errors:

- secrets the log masker knows of (``orchestrator.logs.register_secret``), and
  any the caller names, become ``***``;
- URL query strings and fragments are dropped (they may carry tokens);
- a body of ours echoed back — a ``{...}`` or Go ``map[...]`` group, or a
  ``data:`` section, holding a key of the Secrets we write (``client-id``,
  ``client-secret``, ``password``, ``token``, ``data``, ...) — becomes
  ``<body cut>``; a lone ``password: x`` or ``token=x`` keeps its key and loses
  its value;
- the result is bounded (500 characters by default) and says how much was left
  out, so a 3 MB answer cannot flood a log line or a database column.

What is left stays useful: the callers put the HTTP status and the reason in
front, and the first part of the server's message is kept as it was.

``register_kube_credentials`` tells the masker the credentials a Kubernetes
client was configured with (bearer token, basic auth, and the ones a kubeconfig
document holds), including tokens an exec or auth-provider plugin hands out later.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any

from orchestrator.logs import MASK, mask, register_secret

#: the longest message kept, in characters (the rest is counted, not shown)
MAX_MESSAGE = 500
#: more than this is cut before it is looked at: the scan must stay cheap
_SCAN_LIMIT = 20_000
BODY_CUT = "<body cut>"

_URL = re.compile(r"(?P<base>\bhttps?://[^\s?#\"']+)(?P<rest>[?#][^\s\"']*)?")

#: keys of what we send (the Secrets we write, OAuth forms, headers) whose values are secret
_SECRET_KEYS = (
    r"client[-_]?id|client[-_]?secret|password|passwd|username|"
    r"(?:access|refresh|id|bearer)?[-_]?token|api[-_]?key|authorization|"
    r"client[-_]key[-_]data|private[-_]?key"
)
#: keys whose value is a whole section of a Secret (any key in it may be secret)
_SECTION_KEYS = r"string[-_]?data|data"
# A key as JSON, Python, YAML, a form or a Go map writes it: optionally quoted
# (escaped quotes too), not part of a longer name (``metadata``, ``token-url``; a
# dotted path such as ``uaa.clientsecret`` counts), followed by ``:`` or ``=``.
_KEY_TEMPLATE = r"(?<![\w-])(?:\\?[\"'])?(?:{keys})(?:\\?[\"'])?\s*[:=]"
_ANY_KEY = re.compile(_KEY_TEMPLATE.format(keys=f"{_SECRET_KEYS}|{_SECTION_KEYS}"), re.IGNORECASE)
_SECTION = re.compile(_KEY_TEMPLATE.format(keys=_SECTION_KEYS), re.IGNORECASE)
_QUOTE = r"(?:\\?[\"'])"
_QUOTED_VALUE = r"(?:\\\"(?:[^\\]|\\[^\"])*?\\\"|\"[^\"]*\"?|'[^']*'?)"
# A quoted key (JSON, a Python dict) is followed by a quoted value; anything else
# after it is our own prose (``Invalid value: "client-id": a valid config key``).
_QUOTED_PAIR = re.compile(
    rf"(?P<key>(?<![\w-]){_QUOTE}(?:{_SECRET_KEYS}){_QUOTE}\s*[:=]\s*)(?P<value>{_QUOTED_VALUE})",
    re.IGNORECASE,
)
# A bare key (YAML, a form, a header, a Go map) takes the next word, or a quoted value.
_BARE_PAIR = re.compile(
    rf"(?P<key>(?<![\w-])(?:{_SECRET_KEYS})\s*[:=]\s*)"
    rf"(?P<value>(?:(?:bearer|basic)\s+)?(?:{_QUOTED_VALUE}|[^\s,;&'\"}}\])]+))",
    re.IGNORECASE,
)
_GROUP_START = re.compile(r"\{|(?<![\w-])map\[")
_CLOSING = {"{": "}", "[": "]"}
_LEADING_SPACE = re.compile(r"[ \t]*")


def remote_message(
    text: str | None, *, secrets: Iterable[str] = (), limit: int = MAX_MESSAGE
) -> str:
    """``text`` from a remote server, safe to log, store and answer (see the module doc)."""
    if not text:
        return ""
    dropped = max(0, len(text) - _SCAN_LIMIT)
    text = text[:_SCAN_LIMIT]
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    text = mask(text)
    text = _URL.sub(lambda m: m.group("base"), text)
    text = _cut_groups(text)
    text = _cut_sections(text)
    for pair in (_QUOTED_PAIR, _BARE_PAIR):
        text = pair.sub(lambda m: m.group("key") + MASK, text)
    return _bounded(text, limit=limit, dropped=dropped)


def _bounded(text: str, *, limit: int, dropped: int = 0) -> str:
    more = len(text) - limit + dropped if len(text) > limit else dropped
    if more <= 0:
        return text
    return f"{text[:limit]}… ({more} more characters)"


def _group_end(text: str, opening: int) -> int:
    """The index just after the bracket that closes the one at ``opening`` (or the end)."""
    open_char = text[opening]
    close_char = _CLOSING[open_char]
    depth = 0
    for index in range(opening, len(text)):
        char = text[index]
        if char == open_char:
            depth += 1
        elif char == close_char:
            depth -= 1
            if depth == 0:
                return index + 1
    return len(text)  # never closed: the message was cut short inside it


def _cut_groups(text: str) -> str:
    """Replace each outermost ``{...}``/``map[...]`` group that holds a secret key."""
    parts: list[str] = []
    position = 0
    while True:
        found = _GROUP_START.search(text, position)
        if found is None:
            parts.append(text[position:])
            return "".join(parts)
        start = found.start()
        end = _group_end(text, found.end() - 1)
        group = text[start:end]
        parts.append(text[position:start])
        parts.append(BODY_CUT if _ANY_KEY.search(group) else group)
        position = end


def _cut_sections(text: str) -> str:
    """Replace a ``data:`` section (the rest of its line, and the lines indented
    below it) that holds a secret key."""
    parts: list[str] = []
    position = 0
    while True:
        found = _SECTION.search(text, position)
        if found is None:
            parts.append(text[position:])
            return "".join(parts)
        line_start = text.rfind("\n", 0, found.start()) + 1
        leading = _LEADING_SPACE.match(text, line_start)
        indent = leading.end() - line_start if leading else 0
        end = text.find("\n", found.end())
        while end != -1:
            following = text.find("\n", end + 1)
            line = text[end + 1 : following if following != -1 else len(text)]
            if not line.strip() or len(line) - len(line.lstrip(" \t")) <= indent:
                break
            end = following
        end = len(text) if end == -1 else end
        section = text[found.end() : end]
        parts.append(text[position : found.end()])
        if _ANY_KEY.search(section):
            parts.append(" " + BODY_CUT)
        else:
            parts.append(section)
        position = end


# --- Kubernetes client credentials ---------------------------------------------------------

#: fields of a kubeconfig ``user`` (and its auth-provider ``config``) that are secret
_KUBECONFIG_SECRETS = (
    "token",
    "password",
    "client-key-data",
    "access-token",
    "refresh-token",
    "id-token",
    "client-secret",
)


def register_kubeconfig_secrets(document: Any) -> None:
    """Register the credentials of every user of a kubeconfig document with the masker."""
    if not isinstance(document, dict):
        return
    for entry in document.get("users") or []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        provider = user.get("auth-provider")
        provider_config = provider.get("config") if isinstance(provider, dict) else None
        for fields in (user, provider_config):
            if not isinstance(fields, dict):
                continue
            for key in _KUBECONFIG_SECRETS:
                value = fields.get(key)
                if isinstance(value, str):
                    _register_with_decoded(value, decode=key.endswith("-data"))


def _register_with_decoded(value: str, *, decode: bool) -> None:
    register_secret(value)
    if decode:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return
        register_secret(decoded.strip())


def register_kube_credentials(configuration: Any) -> None:
    """Register what a kubernetes client ``Configuration`` authenticates with.

    A token that a plugin (exec, auth-provider) or the in-cluster token file
    renews later is registered when the client's refresh hook sets it.
    """
    _register_configuration(configuration)
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is None or getattr(hook, "_registers_secrets", False):
        return

    def refresh_and_register(config: Any) -> None:
        hook(config)
        # The client library's hook installs a fresh hook of its own each time.
        register_kube_credentials(config)

    refresh_and_register._registers_secrets = True  # type: ignore[attr-defined]
    configuration.refresh_api_key_hook = refresh_and_register


def _register_configuration(configuration: Any) -> None:
    for value in (getattr(configuration, "api_key", None) or {}).values():
        if isinstance(value, str):
            scheme, _, credential = value.partition(" ")
            if credential and scheme.lower() in ("bearer", "basic"):
                register_secret(credential)
                if scheme.lower() == "basic":
                    _register_basic(credential)
            else:
                register_secret(value)
    register_secret(getattr(configuration, "password", None))


def _register_basic(credential: str) -> None:
    try:
        _, _, password = base64.b64decode(credential).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return
    register_secret(password)
