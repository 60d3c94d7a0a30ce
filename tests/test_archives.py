"""Archives from the network are unpacked only when no member can escape or blow up the target."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from scisr.sources.archives import CorruptArchive, UnsafeArchive, unpack, unpack_matching


def make_zip(path: Path, members: dict[str, bytes], *, modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    data = data or {}
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def test_good_zip_and_tar_unpack_with_subfolders(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "a.zip", {"d/1.dcm": b"one", "2.png": b"two", "d/": b""})
    assert unpack(z, tmp_path / "z") == ["2.png", "d/1.dcm"]
    assert (tmp_path / "z" / "d" / "1.dcm").read_bytes() == b"one"
    file_info = tarfile.TarInfo("top/x.fits")
    t = make_tar(tmp_path / "a.tar.gz", [file_info], {"top/x.fits": b"SIMPLE"})
    assert unpack(t, tmp_path / "t") == ["top/x.fits"]
    kept = unpack_matching(
        make_zip(tmp_path / "b.zip", {"a/x.jpg": b"1", "a/y.txt": b"2", "b/z.txt": b"3"}), tmp_path / "m", ["*.jpg"]
    )
    assert kept == ["a/x.jpg"] and listing(tmp_path / "m") == ["a", "a/x.jpg"]  # emptied folder b removed


@pytest.mark.parametrize("name", ["../evil.dcm", "a/../../evil.dcm", "/etc/evil", "C:/evil", "..\\evil"])
def test_zip_members_that_escape_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    z = make_zip(tmp_path / "bad.zip", {"fine.dcm": b"ok", name: b"evil"})
    with pytest.raises(UnsafeArchive, match=r"bad.zip: member"):
        unpack(z, tmp_path / "out")
    assert listing(tmp_path / "out") == []
    assert not (tmp_path / "evil.dcm").exists() and not (tmp_path.parent / "evil.dcm").exists()


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "link.zip", {"x": b"/etc/passwd"}, modes={"x": stat.S_IFLNK | 0o777})
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        unpack(z, tmp_path / "out")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE])
def test_tar_links_and_devices_are_refused(tmp_path: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("x")
    info.type = kind
    info.linkname = "/etc/passwd"
    t = make_tar(tmp_path / "bad.tar.gz", [info])
    with pytest.raises(UnsafeArchive, match=r"bad.tar.gz: member 'x' is"):
        unpack(t, tmp_path / "out")
    assert listing(tmp_path / "out") == []


def test_tar_parent_path_is_refused(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "bad.tar.gz", [tarfile.TarInfo("../up.txt")], {"../up.txt": b"x"})
    with pytest.raises(UnsafeArchive, match=r"'..'"):
        unpack(t, tmp_path / "out")
    assert not (tmp_path / "up.txt").exists()


def test_limits_on_members_and_unpacked_size(tmp_path: Path) -> None:
    many = make_zip(tmp_path / "many.zip", {f"{i}.dcm": b"x" for i in range(20)})
    with pytest.raises(UnsafeArchive, match=r"more than 10 members.*max_members"):
        unpack(many, tmp_path / "a", max_members=10)
    bomb = make_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(5_000_000)})
    assert bomb.stat().st_size < 50_000
    with pytest.raises(UnsafeArchive, match=r"more than 1000000 bytes.*max_unpacked_bytes"):
        unpack(bomb, tmp_path / "b", max_bytes=1_000_000)
    assert listing(tmp_path / "b") == []


def test_duplicate_members_and_damaged_archives(tmp_path: Path) -> None:
    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("a.dcm", b"1")
        zf.writestr("a.dcm", b"2")
    with pytest.raises(UnsafeArchive, match="appears twice"):
        unpack(z, tmp_path / "d")
    good = make_zip(tmp_path / "good.zip", {"a.dcm": b"payload" * 1000})
    raw = bytearray(good.read_bytes())
    raw[60:70] = b"\xff" * 10  # inside the compressed data: CRC or inflate fails
    (tmp_path / "broken.zip").write_bytes(bytes(raw))
    with pytest.raises(CorruptArchive, match=r"broken.zip"):
        unpack(tmp_path / "broken.zip", tmp_path / "e")
    (tmp_path / "page.zip").write_text("<html>Please log in</html>")
    with pytest.raises(CorruptArchive, match="neither a ZIP nor a tar"):
        unpack(tmp_path / "page.zip", tmp_path / "f")
