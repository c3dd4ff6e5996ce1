"""`publisher init`: writes a production config folder and its private keys.

The text comes from initconfig.py; this puts it on disk. The config is loaded and
validated with `load_settings` before it takes its place, so what is written always
loads; the secret key and the DKIM key are created readable by their owner only, and a
key file already there is kept, never replaced.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from publisher.config import load_settings, redact_url
from publisher.errors import ConfigError, UsageError
from publisher.initconfig import (
    CONFIG_NAME,
    DKIM_KEY_NAME,
    SECRET_KEY_NAME,
    DnsRecord,
    InitAnswers,
    dkim_settings_exist,
    dns_records,
    render_config,
)

__all__ = ["InitResult", "machine_timezone", "write_production_config"]


@dataclass(frozen=True)
class InitResult:
    config: Path
    written: tuple[Path, ...]  # files made now (the config and new keys)
    kept: tuple[Path, ...]  # key files already there, left as they were
    records: tuple[DnsRecord, ...]
    dkim_wired: bool  # the [dkim] lines are live settings, not comments
    notices: tuple[str, ...]


def machine_timezone(
    environ: Mapping[str, str] | None = None,
    localtime: Path = Path("/etc/localtime"),
    timezone_file: Path = Path("/etc/timezone"),
) -> str:
    """This machine's IANA zone: $TZ, the /etc/localtime link, /etc/timezone; else UTC."""
    env = os.environ if environ is None else environ
    candidates = [env.get("TZ", "").lstrip(":")]
    try:
        target = Path(os.path.realpath(localtime)).parts
        if "zoneinfo" in target:
            candidates.append("/".join(target[target.index("zoneinfo") + 1 :]))
    except OSError:
        pass
    with contextlib.suppress(OSError, UnicodeDecodeError):
        candidates.append(timezone_file.read_text(encoding="utf-8").strip())
    for name in candidates:
        if name and not name.startswith("/"):
            try:
                ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
            return name
    return "UTC"


# -- writing -------------------------------------------------------------------------


def write_production_config(folder: Path, answers: InitAnswers, *, force: bool) -> InitResult:
    """Write folder/publisher.toml and the key files it names; refuse (UsageError) to
    replace a config unless `force`. Key files already there are kept: a new secret key
    breaks every link already mailed, a new DKIM key the published DNS record."""
    config = folder / CONFIG_NAME
    if config.exists() and not force:
        raise UsageError(
            f"{config} exists; not overwriting it", "pass --force to replace it (keys are kept)"
        )
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    wired = dkim_settings_exist()
    text = render_config(answers, dkim_wired=wired)
    private = redact_url(answers.database_url) != answers.database_url
    written: list[Path] = []
    kept: list[Path] = []
    candidate: Path | None = None
    try:
        secret = folder / SECRET_KEY_NAME
        if _write_private(secret, (token_urlsafe(32) + "\n").encode("ascii")):
            written.append(secret)
        else:
            kept.append(secret)
        public: bytes | None = None
        key_kind = "rsa"
        if answers.dkim_selector:
            key_file = folder / DKIM_KEY_NAME
            if _write_private(key_file, _new_dkim_key()):
                written.append(key_file)
            else:
                kept.append(key_file)
            key_kind, public = _public_key(key_file)
        # checked once the keys it names exist, before it takes its place
        candidate = _checked_candidate(folder, config, text, private=private)
        if force:
            os.replace(candidate, config)
        else:
            os.link(candidate, config)  # no-clobber: fails if a config appeared meanwhile
            candidate.unlink()
    except BaseException:
        if candidate is not None:
            candidate.unlink(missing_ok=True)
        for path in written:  # a refused config leaves nothing behind
            path.unlink(missing_ok=True)
        raise
    notices = load_settings(config, environ={}).notices
    return InitResult(
        config=config,
        written=(config, *written),
        kept=tuple(kept),
        records=dns_records(answers, key_kind, public),
        dkim_wired=wired,
        notices=notices,
    )


def _checked_candidate(folder: Path, config: Path, text: str, *, private: bool) -> Path:
    """The config text in a temporary file beside its place, loaded and validated."""
    handle, name = tempfile.mkstemp(dir=folder, prefix=".publisher.", suffix=".toml")
    candidate = Path(name)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    # the keys are files of their own; only a database password would make it secret
    os.chmod(candidate, 0o600 if private else 0o644)
    try:
        load_settings(candidate, environ={})
    except ConfigError as exc:
        candidate.unlink()
        raise ConfigError(exc.message.replace(str(candidate), str(config)), exc.hint) from exc
    return candidate


def _write_private(path: Path, data: bytes) -> bool:
    """Create `path` readable by its owner only; False (untouched) if it exists."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    return True


def _new_dkim_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_key(path: Path) -> tuple[str, bytes]:
    """("rsa" or "ed25519", the bytes a DKIM record's p= carries) of a PEM private key."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"{path} is not an unencrypted PEM private key",
            "move it away and run init again to make a new one",
        ) from exc
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa", key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if isinstance(key, ed25519.Ed25519PrivateKey):  # RFC 8463: the raw 32 bytes
        return "ed25519", key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    raise UsageError(f"{path} is neither an RSA nor an Ed25519 key")
