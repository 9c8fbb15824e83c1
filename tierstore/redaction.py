"""Credentials out of all that tierstore shows: one rule for which names hold a secret, and
:func:`redact`, which applies it to storage options, URLs and any text (a repr, an error, a
log line, a command line).

A name holds a secret when, lower-cased and without ``_``, ``-`` and ``.``, it contains
``secret``, ``password``, ``passwd``, ``token``, ``credential`` or ``connectionstring``, ends in
``signature``, ``key`` or ``keyid`` (``account_key``, ``aws_access_key_id``, ``SSECustomerKey``),
or is ``key``, ``username`` (s3fs's names of the access key id), ``sig`` (a SAS URL's),
``pwd``, ``auth`` or ``authorization``. tests/test_redaction.py holds the rule to the option
names of s3fs, gcsfs, adlfs and libpq.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, overload
from urllib.parse import unquote

__all__ = ["MASK", "is_secret", "mask", "redact", "secret_values"]

MASK = "***"

_SECRET_NAME = re.compile(r"secret|passw(?:or)?d|token|credential|connectionstring|signature$"
                          r"|.key(?:id)?$|^(?:key|username|sig|pwd|auth|authorization)$")
# scheme://USERINFO@ up to the last @ before the path: a password may hold an unescaped @
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^\s/'\"<>]+)@")
_QUOTED = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
# NAME=VALUE (a query, a libpq conninfo, an Azure connection string, --option=...), and
# "NAME": "VALUE" or 'NAME': 'VALUE' (JSON, a dict's repr)
_PAIR = re.compile(rf"""(?<![\w.])(?:(?P<q>["'])(?P<qname>[A-Za-z][\w.-]*)(?P=q)\s*[=:]\s*
                        (?P<qvalue>{_QUOTED})
                       |(?P<name>[A-Za-z][\w.-]*)\s*=\s*(?P<value>{_QUOTED}|[^\s&;,'"]+))""",
                   re.VERBOSE)


def is_secret(name: str) -> bool:
    """Whether an option, parameter or field called ``name`` holds a credential."""
    return _SECRET_NAME.search(re.sub(r"[-_.]", "", name.lower())) is not None


@overload
def redact(value: str) -> str: ...


@overload
def redact(value: Mapping[str, Any]) -> dict[str, Any]: ...


def redact(value: str | Mapping[str, Any]) -> str | dict[str, Any]:
    """``value`` safe to show.

    A mapping (storage options, a conninfo's parameters) is copied with the value of every
    secret name, whatever its type, as ``"***"`` and its other values redacted in turn. Text
    keeps its words but not a URL's ``user:password@`` (shown as ``***@``) nor the value of a
    secret ``NAME=VALUE`` (``?password=``, ``AccountKey=``, ``--secret=``) or ``"NAME":
    "VALUE"`` pair; but ``key`` alone, in text, is tierstore's word for an object's name (a
    log line's ``key=ds/x``): there it stays, and a configured key is masked by its value
    (:func:`secret_values`).
    """
    if isinstance(value, str):
        return _PAIR.sub(_mask_pair, _USERINFO.sub(rf"\1{MASK}@", value))
    return {name: MASK if is_secret(str(name)) else _redact_any(item)
            for name, item in value.items()}


def secret_values(value: str | Mapping[str, Any]) -> list[str]:
    """The secrets ``value`` holds (as :func:`redact` finds them), as written and
    percent-decoded: to mask wherever they appear without their name (a library's error)."""
    found: set[str] = set()
    if isinstance(value, str):
        for match in _USERINFO.finditer(value):
            found.add(match.group(2).partition(":")[2])
        for match in _PAIR.finditer(value):
            name, text = _name_and_value(match)
            if _secret_in_text(name):
                found.add(text.strip("\"'"))
    else:
        for name, item in value.items():
            if is_secret(str(name)):
                found.update(_leaves(item))
            elif isinstance(item, str | Mapping):
                found.update(secret_values(item))
    found |= {unquote(text) for text in found}
    return sorted((text for text in found if text), key=len, reverse=True)


def _redact_any(value: Any) -> Any:
    return redact(value) if isinstance(value, str | Mapping) else value


def _name_and_value(match: re.Match[str]) -> tuple[str, str]:
    if match.group("q"):
        return match.group("qname"), match.group("qvalue")
    return match.group("name"), match.group("value")


def _secret_in_text(name: str) -> bool:
    return name.lower() != "key" and is_secret(name)


def _mask_pair(match: re.Match[str]) -> str:
    name, value = _name_and_value(match)
    head = match.group(0)[:match.start("qvalue" if match.group("q") else "value")
                          - match.start()]
    if not _secret_in_text(name):
        return head + _PAIR.sub(_mask_pair, value)  # a secret may sit inside: "msg": "k=v"
    quote = value[0] if value[0] in "\"'" else ""
    return f"{head}{quote}{MASK}{quote}"


def _leaves(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    return [str(value)] if isinstance(value, str | int) and not isinstance(value, bool) else []


def mask(text: str, secrets: Iterable[str]) -> str:
    r"""``text`` with each of ``secrets`` (configured values: a key, a password) masked
    wherever it appears, then :func:`redact`\ ed (longer secrets first: one may hold
    another)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact(text)
