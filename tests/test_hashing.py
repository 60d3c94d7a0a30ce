"""The one content digest: file and folder sha256 (manifest, VGG weights check, training-data hash)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from scisr.io.hashing import CHUNK, file_sha256, folder_sha256


def test_file_digest_is_sha256_of_the_bytes_across_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (CHUNK // 256 * 2 + 3)  # more than two chunks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_folder_digest_covers_names_and_bytes_of_matching_files_only(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(b"bee")
    (tmp_path / "a.png").write_bytes(b"ay")
    (tmp_path / "notes.txt").write_bytes(b"ignored")
    expected = hashlib.sha256(b"a.png\0ay" + b"b.png\0bee").hexdigest()
    assert folder_sha256(tmp_path) == expected
    (tmp_path / "b.png").rename(tmp_path / "c.png")  # same bytes, another name
    assert folder_sha256(tmp_path) != expected
