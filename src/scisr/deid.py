"""Pseudonyms for everything that leaves the raw folder: keyed hashes with a per-study secret.

- The secret is 32 random bytes (hex) in a file OUTSIDE results/ (config `deid.secret`,
  default resources/secret.key), created on first use with mode 0600. Pseudonyms are
  HMAC-SHA256(secret, kind + NUL + value), so nobody without the secret can confirm a guessed
  PatientID by hashing it. Deleting or replacing the file changes every pseudonym: rerun from
  extract (`snakemake --forcerun extract`) and keep a copy of the file if old results must
  stay traceable.
- The key map (`write_key_map`, config `deid.key_map_dir`) lists each pseudonym beside the
  original subject, series and relative source path, so a user can trace an image back; it
  is written with mode 0600 next to the secret, never under results/.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

import pandas as pd

from scisr.io.files import atomic_path

KEY_MAP_COLUMNS = ["kind", "pseudonym", "original"]
_SECRET_BYTES = 32


def load_secret(path: str | os.PathLike) -> bytes:
    """The study's secret from `path`, created (mode 0600) when absent; concurrent first uses agree."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(_SECRET_BYTES) + "\n")
            with contextlib.suppress(FileExistsError):  # another job created it first: then use theirs
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ValueError(
            f"{path}: not a SciSR secret (expected at least 32 hex digits); delete it to make a new one "
            "(every pseudonym then changes) or restore the study's copy"
        )
    return key


class Pseudonymizer:
    """Keyed, stable pseudonyms by kind; remembers every one it made for the key map."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.made: dict[tuple[str, str], str] = {}

    def digest(self, kind: str, value: str, length: int = 10) -> str:
        """`length` hex digits of HMAC-SHA256(secret, kind NUL value)."""
        mac = hmac.new(self._secret, f"{kind}\0{value}".encode("utf-8", "surrogateescape"), hashlib.sha256)
        return mac.hexdigest()[:length]

    def name(self, kind: str, value: str, prefix: str) -> str:
        """`prefix-<10 hex>` for a non-empty value ('' stays ''), recorded for the key map."""
        if not value:
            return ""
        token = f"{prefix}-{self.digest(kind, value)}"
        self.made[(kind, token)] = value
        return token

    def subject(self, value: str) -> str:
        """Pseudonymous subject id, e.g. sub-3fa9c2e41b."""
        return self.name("subject", value, "sub")

    def series(self, value: str) -> str:
        """Pseudonymous series id, e.g. ser-81c0a6e2d4."""
        return self.name("series", value, "ser")

    def source(self, rel_path: str) -> str:
        """Pseudonymous source file (a path relative to the raw folder), e.g. src-0b77e1f3c2."""
        return self.name("source", rel_path, "src")

    def uid(self, value: str) -> str:
        """Pseudonymous DICOM UID (SOP instance), e.g. uid-5d1e9a0c37."""
        return self.name("uid", value, "uid")

    def table(self) -> pd.DataFrame:
        """Every pseudonym made so far: kind, pseudonym, original (sorted)."""
        rows = [{"kind": kind, "pseudonym": token, "original": value} for (kind, token), value in self.made.items()]
        return pd.DataFrame(rows, columns=KEY_MAP_COLUMNS).sort_values(["kind", "pseudonym"], ignore_index=True)


def write_key_map(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the pseudonym -> original table atomically with mode 0600 (it re-identifies)."""
    with atomic_path(path) as tmp:
        table[KEY_MAP_COLUMNS].to_csv(tmp, sep="\t", index=False, lineterminator="\n")
        os.chmod(tmp, 0o600)


def read_key_map(path: str | os.PathLike) -> pd.DataFrame:
    """Read a key map written by `write_key_map` (every column as text)."""
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


_PSEUDONYM = re.compile(r"\b(?:sub|ser|src|uid)-[0-9a-f]{10}\b")


def reidentify(table: pd.DataFrame, key_map: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """A copy of an index-like table with every pseudonym (in any text column) replaced by its original."""
    keys = key_map if isinstance(key_map, pd.DataFrame) else read_key_map(key_map)
    original = dict(zip(keys["pseudonym"], keys["original"]))
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(
                lambda v: _PSEUDONYM.sub(lambda m: original.get(m.group(0), m.group(0)), v) if isinstance(v, str) else v
            )
    return out
