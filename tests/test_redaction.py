"""One redaction for the whole project (tierstore.redaction), held to the option names of the
libraries tierstore passes options to: s3fs (and botocore under it), gcsfs, adlfs, libpq."""

from __future__ import annotations

import inspect
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import s3fs
from psycopg import pq

import tierstore.config
from tierstore.config import Config, TierClass, TierConfig
from tierstore.redaction import MASK, redact, secret_values
from tierstore.telemetry import LogFormatter, secrets_of
from tierstore.tier import Tier

ROOT = Path(__file__).resolve().parents[1]

# name -> secret?, per library: s3fs's own parameters (checked against the installed s3fs
# below), then what it hands to botocore; gcsfs's and adlfs's from their documentation.
S3FS = {"anon": False, "endpoint_url": False, "key": True, "secret": True, "token": True,
        "use_ssl": False, "client_kwargs": False, "requester_pays": False,
        "default_block_size": False, "default_fill_cache": False, "default_cache_type": False,
        "version_aware": False, "config_kwargs": False, "s3_additional_kwargs": False,
        "session": False, "username": True, "password": True, "cache_regions": False,
        "asynchronous": False, "loop": False, "max_concurrency": False,
        "fixed_upload_size": False, "local_expiry_check": False}
BOTOCORE = {"aws_access_key_id": True, "aws_secret_access_key": True, "aws_session_token": True,
            "region_name": False, "endpoint_url": False, "verify": False, "api_version": False,
            "signature_version": False, "connect_timeout": False, "SSECustomerKey": True,
            "SSECustomerAlgorithm": False, "ServerSideEncryption": False, "SSEKMSKeyId": True,
            "ACL": False}
GCSFS = {"project": False, "access": False, "token": True, "block_size": False,
         "consistency": False, "cache_timeout": False, "secure_serialize": False,
         "check_connection": False, "requests_timeout": False, "requester_pays": False,
         "session_kwargs": False, "timeout": False, "endpoint_url": False,
         "default_location": False, "version_aware": False}
ADLFS = {"account_name": False, "account_key": True, "connection_string": True,
         "credential": True, "sas_token": True, "request_session": False,
         "socket_timeout": False, "blocksize": False, "client_id": False, "client_secret": True,
         "tenant_id": False, "anon": False, "location_mode": False, "default_fill_cache": False,
         "default_cache_type": False, "version_aware": False, "assume_container_exists": False,
         "max_concurrency": False, "timeout": False, "connection_timeout": False,
         "read_timeout": False, "account_host": False}
LIBPQ_PLAIN = {"service", "user", "passfile", "channel_binding", "connect_timeout", "dbname",
               "host", "hostaddr", "port", "client_encoding", "options", "application_name",
               "sslmode", "sslcert", "sslrootcert", "sslcrl", "require_auth",
               "target_session_attrs", "gssencmode", "krbsrvname", "oauth_issuer",
               "oauth_client_id", "oauth_scope", "sslkeylogfile"}


def test_the_s3fs_table_names_every_s3fs_option() -> None:
    names = set(inspect.signature(s3fs.S3FileSystem.__init__).parameters) - {"self", "kwargs"}
    assert names <= set(S3FS), f"classify the new s3fs options {names - set(S3FS)}"


@pytest.mark.parametrize("table", [S3FS, BOTOCORE, GCSFS, ADLFS],
                         ids=["s3fs", "botocore", "gcsfs", "adlfs"])
def test_exactly_the_secret_options_are_masked(table: dict[str, bool]) -> None:
    options = {name: f"value-of-{name}" for name in table}
    shown = redact(options)
    assert {name for name in table if shown[name] == MASK} == \
        {name for name, secret in table.items() if secret}
    assert all(shown[name] == options[name] for name, secret in table.items() if not secret)
    secrets = {options[name] for name, secret in table.items() if secret}
    assert set(secret_values(options)) == secrets
    tier = TierConfig(name="t", tier_class=TierClass.WARM, url="memory://t", options=options)
    assert not any(value in repr(tier) for value in secrets)


def test_libpq_options_it_shows_as_passwords_are_masked() -> None:
    """libpq marks the options a client must not show (``dispchar`` ``*``)."""
    names = {o.keyword.decode(): o.dispchar == b"*" for o in pq.Conninfo.get_defaults()}
    assert {"password", "sslpassword"} <= {name for name, hidden in names.items() if hidden}
    shown = redact({name: "x-value" for name in names})
    assert all(shown[name] == MASK for name, hidden in names.items() if hidden)
    assert all(shown[name] == "x-value" for name in LIBPQ_PLAIN & set(names))


def test_nested_options_and_whole_credential_tables() -> None:
    """Nested tables are redacted in turn; a secret-named table (gcsfs's service-account
    token) is masked whole, and every string in it is a secret value."""
    options: dict[str, Any] = {
        "client_kwargs": {"aws_secret_access_key": "sk-1", "region_name": "eu-west-1",
                          "endpoint_url": "http://minio:minio-pass@minio:9000"},
        "token": {"type": "service_account", "private_key": "pk-2", "client_email": "a@b"}}
    shown = redact(options)
    assert shown == {"client_kwargs": {"aws_secret_access_key": MASK,
                                       "region_name": "eu-west-1",
                                       "endpoint_url": "http://***@minio:9000"},
                     "token": MASK}
    assert {"sk-1", "pk-2", "minio-pass"} <= set(secret_values(options))


@pytest.mark.parametrize(("text", "hidden", "kept"), [
    ("ftp://u:pass-1@ftp.example/data", ["pass-1", "u:"], ["ftp.example/data"]),
    ("ftp://u:p@ss-2@ftp.example/x", ["p@ss-2"], ["ftp.example/x"]),  # an unescaped @
    ("postgresql://ts@db:5432/t?sslmode=require&password=pw-3&sslpassword=pw-4",
     ["pw-3", "pw-4"], ["db:5432/t", "sslmode=require"]),
    ("host=db user=ts password=pw-5 sslpassword='pw 6' dbname=t", ["pw-5", "pw 6"],
     ["host=db", "user=ts", "dbname=t"]),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k7/Zz==;"
     "EndpointSuffix=core.windows.net", ["k7/Zz"], ["AccountName=acct", "EndpointSuffix"]),
    ("https://acct.blob.core.windows.net/c?sv=2024-01-01&se=2030&sig=s8%2Bsig",
     ["s8%2Bsig"], ["sv=2024-01-01", "se=2030"]),
    ("tierstore bench io --aws-secret-access-key=sk-9 --sas_token='tok 10' --bs=4k",
     ["sk-9", "tok 10"], ["--bs=4k"]),
    ("""error: {'secret': 'sk-12', "token": "tok-13", "port": 5432}""",
     ["sk-12", "tok-13"], ["5432"]),
    # in text, "key" names an object: a log line's, in text or JSON
    ("""move key=datasets/a.tar from=warm {"key": "datasets/b.tar"}""", [],
     ["key=datasets/a.tar", '"key": "datasets/b.tar"']),
])
def test_text_keeps_its_words_but_no_credential(text: str, hidden: list[str],
                                                 kept: list[str]) -> None:
    shown = redact(text)
    assert not any(secret in shown for secret in hidden), shown
    assert all(word in shown for word in kept), shown
    assert redact(shown) == shown


def test_reprs_show_no_credential_of_a_url() -> None:
    tier = TierConfig(name="f", tier_class=TierClass.COLD, url="ftp://u:ftp-pass@archive/x")
    config = Config(home=Path("/tmp/t"), tiers={"f": tier}, default_tier="f",
                    catalog="postgresql://ts@db:5432/t?password=pg-pass&sslpassword=ssl-pass")
    for text in (repr(tier), repr(Tier(tier)), repr(config)):
        assert not re.search("ftp-pass|pg-pass|ssl-pass", text), text
        assert "archive/x" in text
    assert {"ftp-pass", "pg-pass", "ssl-pass"} <= set(secrets_of(config))


@pytest.mark.parametrize("style", ["text", "json"])
def test_log_lines_mask_what_a_library_error_quotes(style: str) -> None:
    formatter = LogFormatter(style, secrets=["configured-secret"])
    line = formatter.format(logging.makeLogRecord({
        "name": "tierstore.daemon", "levelname": "WARNING", "msg": "connect failed: %s",
        "args": ("password=pw-14 host=db",),
        "fields": {"error": "{'secret': 'configured-secret'}", "key": "ds/a"}}))
    assert "pw-14" not in line and "configured-secret" not in line and "ds/a" in line
    if style == "json":
        assert json.loads(line)["message"] == "connect failed: password=*** host=db"


def test_one_redaction_function_serves_everyone() -> None:
    """No module keeps its own masking of URLs or secret names."""
    assert tierstore.config.redact is redact
    own = re.compile(r"def (safe_url|redact|_redact_text)\b|_SECRET_(OPTION|ARG)\b|://\)\[\^")
    found = [str(path.relative_to(ROOT)) for folder in ("tierstore", "loader", "policies", "bench")
             for path in (ROOT / folder).rglob("*.py")
             if path.name != "redaction.py" and own.search(path.read_text())]
    assert found == []
