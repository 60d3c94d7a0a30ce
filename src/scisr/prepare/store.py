"""The training store: a dataset's HR/LR pairs in two raw uint16 files, read a patch at a time.

`StoreWriter` writes one (the split phase writes one per dataset as it writes the PNGs: the same 16-bit
pixels); `PairStore` reads it with `pread` (a patch is the rows it spans), so a process holds one patch at a
time and its memory does not grow with the data; the operating system's page cache does the caching.
`open_part` opens the pairs of one split part (its HR PNGs' names) in the dataset's store; `open_store`
copies a part's PNGs into a store of its own once (one image in memory at a time) for use without the
split phase's store, and reuses it while the part's files are unchanged. Pairs are ordered by the sha256 of
their float32 pixels (names are keyed pseudonyms), and uint16 becomes float32 exactly as
`scisr.io.files.read_png16` converts it. numpy only: the split phase's environment has no torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from scisr.io.files import PNG_MAX, atomic_path, link_or_copy

log = logging.getLogger(__name__)
STORE_FORMAT = 1


HR_DIR, LR_DIR = "HR", "LR"  # the two folders of a split part: the layout's one owner is `pair_dirs`


def pair_dirs(part_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The (HR, LR) image folders of one split part (`<split>/train`, `val` or `test`), same names in each."""
    part_dir = Path(part_dir)
    return part_dir / HR_DIR, part_dir / LR_DIR


def to_float(array: np.ndarray) -> np.ndarray:
    """uint16 pixels as float32 in [0, 1], exactly as read_png16 converts them."""
    return array.astype(np.float32) / PNG_MAX


def read_u16(path: Path) -> np.ndarray:
    """A 16-bit grayscale PNG's pixels as native uint16 (the bytes read_png16 converts)."""
    with Image.open(path) as im:
        array = np.asarray(im)
    if array.dtype.kind != "u" or array.dtype.itemsize != 2 or array.ndim != 2:
        raise ValueError(f"{path}: expected a 16-bit grayscale PNG, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array, dtype=np.uint16)


def pair_paths(folder: str | os.PathLike, scale: int) -> list[tuple[Path, Path]]:
    """The (HR, LR) PNG paths of a split part, sorted by name; an LR partner must exist."""
    hr_dir, lr_dir = pair_dirs(folder)
    hr_paths = sorted(hr_dir.glob("*.png"))
    if not hr_paths:
        raise FileNotFoundError(f"{hr_dir}: no PNG images")
    pairs = []
    for hr_path in hr_paths:
        lr_path = lr_dir / hr_path.name
        if not lr_path.is_file():
            raise FileNotFoundError(f"{lr_path}: missing LR partner of {hr_path}")
        pairs.append((hr_path, lr_path))
    return pairs


def check_shapes(lr_path: Path, hr_shape: tuple[int, ...], lr_shape: tuple[int, ...], scale: int) -> None:
    expected = (hr_shape[0] // scale, hr_shape[1] // scale)
    if hr_shape[0] % scale or hr_shape[1] % scale or tuple(lr_shape) != expected:
        raise ValueError(f"{lr_path}: LR shape {tuple(lr_shape)} is not HR shape {tuple(hr_shape)} / scale {scale}")


def content_key(hr: np.ndarray, lr: np.ndarray) -> str:
    """The sha256 by which pairs are ordered: of the float32 pixels, HR then LR (names are keyed pseudonyms)."""
    return hashlib.sha256(to_float(hr).tobytes() + to_float(lr).tobytes()).hexdigest()


class PairStore:
    """HR and LR pixels of one split part in two raw uint16 files, read a patch (rows) at a time with pread."""

    def __init__(self, folder: str | os.PathLike, names: list[str] | None = None) -> None:
        """Open the store in `folder`; `names` keeps only those pairs (a split part's), in the store's order."""
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        if index.get("format") != STORE_FORMAT:
            raise ValueError(f"{self.folder}: store format {index.get('format')} is not {STORE_FORMAT}")
        self.entries = index["pairs"]
        if names is not None:
            wanted = set(names)
            self.entries = [e for e in self.entries if e["name"] in wanted]
            missing = wanted - {e["name"] for e in self.entries}
            if missing:
                raise FileNotFoundError(
                    f"{self.folder}: no pair {min(missing)!r} (of {len(missing)} missing); "
                    "the store and the split part come from different runs: rerun the split"
                )
        self.names = [e["name"] for e in self.entries]
        files = {_file(e, kind) for e in self.entries for kind in ("hr", "lr")}
        self._fds = {name: os.open(self.folder / name, os.O_RDONLY) for name in sorted(files)}

    def __len__(self) -> int:
        return len(self.entries)

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)

    def lr_shape(self, i: int) -> tuple[int, int]:
        return tuple(self.entries[i]["lr_shape"])

    def hr_shape(self, i: int) -> tuple[int, int]:
        return tuple(self.entries[i]["hr_shape"])

    def _rows(self, kind: str, i: int, top: int, count: int) -> np.ndarray:
        """Rows [top, top + count) of pair i's `kind` image as uint16 (count, width)."""
        entry = self.entries[i]
        width = entry[f"{kind}_shape"][1]
        start = entry[f"{kind}_offset"] + top * width * 2
        data = os.pread(self._fds[_file(entry, kind)], count * width * 2, start)
        if len(data) != count * width * 2:
            raise OSError(f"{self.folder / _file(entry, kind)}: truncated (pair {entry['name']}); delete {self.folder}")
        return np.frombuffer(data, dtype=np.uint16).reshape(count, width)

    def image(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair i as (LR, HR) float32 (h, w) arrays in [0, 1]."""
        (lh, _), (hh, _) = self.lr_shape(i), self.hr_shape(i)
        return to_float(self._rows("lr", i, 0, lh)), to_float(self._rows("hr", i, 0, hh))

    def patch(self, i: int, y: int, x: int, size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
        """The LR patch of `size` px at (y, x) of pair i and its HR partner, as float32 (p, p) arrays."""
        lr = self._rows("lr", i, y, size)[:, x : x + size]
        hr = self._rows("hr", i, y * scale, size * scale)[:, x * scale : (x + size) * scale]
        return to_float(lr), to_float(hr)


def _file(entry: dict, kind: str) -> str:
    """The data file of an index entry's `kind` (hr, lr) pixels: `<kind>.u16`, or the one it names (a joined store)."""
    return entry.get(f"{kind}_file", f"{kind}.u16")


def merge_stores(parts: list[str | os.PathLike], folder: str | os.PathLike) -> int:
    """Join the stores `parts` (one per work unit of the split phase) into one store in `folder`: their data files
    hard-linked (copied where links fail) as `<kind>.<n>.u16`, one index of every pair sorted by content key;
    return the number of pairs. Index last, as `StoreWriter` does, so a store with an index is whole."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.json").unlink(missing_ok=True)
    entries, scales, kept = [], set(), {"index.json"}
    for n, part in enumerate(map(Path, parts), 1):
        index = json.loads((part / "index.json").read_text())
        if index.get("format") != STORE_FORMAT:
            raise ValueError(f"{part}: store format {index.get('format')} is not {STORE_FORMAT}")
        scales.add(index["scale"])
        for kind in ("hr", "lr"):
            link_or_copy(part / f"{kind}.u16", folder / f"{kind}.{n}.u16")
            kept.add(f"{kind}.{n}.u16")
        entries += [{**e, "hr_file": f"hr.{n}.u16", "lr_file": f"lr.{n}.u16"} for e in index["pairs"]]
    if len(scales) > 1:
        raise ValueError(f"{folder}: the parts' stores have different scales {sorted(scales)}; rerun the split")
    for stale in folder.glob("*.u16"):
        if stale.name not in kept:
            stale.unlink()
    entries.sort(key=lambda e: (e["key"], e["name"]))
    with atomic_path(folder / "index.json") as tmp:
        tmp.write_text(
            json.dumps(
                {"format": STORE_FORMAT, "scale": scales.pop() if scales else None, "files": None, "pairs": entries}
            )
        )
    return len(entries)


class StoreWriter:
    """Writes a `PairStore`: `add` each pair's uint16 HR and LR pixels, then `close` (files renamed into place,
    the index last, so a store with an index is whole). The split phase writes one per dataset."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "index.json").unlink(missing_ok=True)
        self._tmp = {kind: self.folder / f".{kind}.u16.{os.getpid()}.tmp" for kind in ("hr", "lr")}
        self._files = {kind: open(path, "wb") for kind, path in self._tmp.items()}  # noqa: SIM115 (closed in close)
        self._offsets = {"hr": 0, "lr": 0}
        self.entries: list[dict] = []

    def add(self, name: str, hr: np.ndarray, lr: np.ndarray) -> None:
        """Append one pair (2-D uint16 arrays, LR = HR / scale)."""
        hr, lr = np.ascontiguousarray(hr, dtype="<u2"), np.ascontiguousarray(lr, dtype="<u2")
        self.entries.append(
            {
                "name": name,
                "key": content_key(hr, lr),
                "hr_shape": list(hr.shape),
                "lr_shape": list(lr.shape),
                "hr_offset": self._offsets["hr"],
                "lr_offset": self._offsets["lr"],
            }
        )
        for kind, array in (("hr", hr), ("lr", lr)):
            self._files[kind].write(array.tobytes())
            self._offsets[kind] += array.nbytes

    def close(self, scale: int, files: list | None = None) -> None:
        """Finish the store: data files renamed into place, then the index (pairs sorted by content key)."""
        for kind, handle in self._files.items():
            handle.close()
            os.replace(self._tmp[kind], self.folder / f"{kind}.u16")
        self.entries.sort(key=lambda e: (e["key"], e["name"]))
        with atomic_path(self.folder / "index.json") as tmp:
            tmp.write_text(json.dumps({"format": STORE_FORMAT, "scale": scale, "files": files, "pairs": self.entries}))

    def abort(self) -> None:
        """Drop the unfinished files."""
        for kind, handle in self._files.items():
            handle.close()
            self._tmp[kind].unlink(missing_ok=True)


def open_part(part_dir: str | os.PathLike, store_dir: str | os.PathLike) -> PairStore:
    """The pairs of split part `part_dir` (its HR PNGs' names) in the dataset's store `store_dir`."""
    hr_dir, _ = pair_dirs(part_dir)
    names = sorted(p.name for p in hr_dir.glob("*.png"))
    if not names:
        raise FileNotFoundError(f"{hr_dir}: no PNG images")
    return PairStore(store_dir, names)


def _listing(pairs: list[tuple[Path, Path]]) -> list[list]:
    """What identifies the part's files: name, sizes and modification times of every HR and LR PNG."""
    out = []
    for hr_path, lr_path in pairs:
        hs, ls = hr_path.stat(), lr_path.stat()
        out.append([hr_path.name, hs.st_size, hs.st_mtime_ns, ls.st_size, ls.st_mtime_ns])
    return out


def open_store(folder: str | os.PathLike, scale: int, store_dir: str | os.PathLike) -> PairStore:
    """The `PairStore` of split part `folder` in `store_dir`: reused when it lists the same files, else written
    anew (one image in memory at a time; files written to temporary names and renamed, index last)."""
    pairs = pair_paths(folder, scale)
    listing = _listing(pairs)
    store_dir = Path(store_dir)
    index_path = store_dir / "index.json"
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text())
            if index.get("format") == STORE_FORMAT and index.get("files") == listing and index.get("scale") == scale:
                return PairStore(store_dir)
        except (OSError, ValueError):
            pass
        log.info("%s: the split part changed; writing its training store again", store_dir)
    writer = StoreWriter(store_dir)
    try:
        for hr_path, lr_path in pairs:
            hr_u16, lr_u16 = read_u16(hr_path), read_u16(lr_path)
            check_shapes(lr_path, hr_u16.shape, lr_u16.shape, scale)
            writer.add(hr_path.name, hr_u16, lr_u16)
    except BaseException:
        writer.abort()
        raise
    writer.close(scale, listing)
    log.info("%s: training store of %d pairs", store_dir, len(writer.entries))
    return PairStore(store_dir)
