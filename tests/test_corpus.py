"""Every kind of bad or odd input in the generated corpus gets its stated outcome in index.tsv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from corpus import LIMIT, build_corpus
from PIL import Image

from scisr.cli import main
from scisr.deid import reidentify
from scisr.extract import extract_dataset
from scisr.io import BT601
from scisr.io.files import read_tiff
from scisr.sources.manifest import Entry, build_manifest


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, pd.DataFrame, Path]:
    tmp = tmp_path_factory.mktemp("corpus")
    raw = tmp / "raw"
    cases = build_corpus(raw)
    table = build_manifest(raw, [Entry(path=c.name, source="corpus", subject="") for c in cases])
    index = extract_dataset(
        raw,
        table,
        tmp / "frames",
        tmp / "index.tsv",
        secret=bytes(32),
        key_map=tmp / "keys.tsv",
        frames={"pixel_data": []},
        max_bytes=LIMIT,
    )
    index = reidentify(index, tmp / "keys.tsv")  # source paths and reasons name the files again
    return raw, cases, index, tmp / "frames"


def test_corpus_is_large_enough(extracted) -> None:
    _, cases, _, _ = extracted
    assert len(cases) >= 40
    assert sum(c.status == "skipped" for c in cases) >= 40


def test_every_file_recorded_with_its_expected_outcome(extracted) -> None:
    _, cases, index, _ = extracted
    assert set(index["source_path"]) == {c.name for c in cases}
    assert (index.loc[index["status"] == "skipped", "reason"].str.len() > 0).all()
    assert not index["reason"].str.contains("\n|\t").any()
    wrong = []
    for case in cases:
        rows = index[index["source_path"] == case.name]
        for _, row in rows.iterrows():
            if row["status"] != case.status or case.reason not in row["reason"]:
                wrong.append(f"{case.kind} ({case.name}): got {row['status']} '{row['reason']}'")
    assert not wrong, "\n".join(wrong)
    intact = index.loc[index["source_path"] == "mr_intact.dcm", "image_id"].item()
    j2k = index.loc[index["source_path"] == "mr_same_instance_j2k.dcm", "reason"].item()
    assert j2k.startswith(f"duplicate of {intact} ")


def test_values_of_converted_files(extracted) -> None:
    raw, _, index, frames = extracted
    ok = index[index["status"] == "ok"].set_index("source_path")
    assert read_tiff(frames / f"{ok.loc['mr_intact.dcm', 'image_id']}.tif").max() == 2145.0
    rgba = np.asarray(Image.open(raw / "rgba.png")).astype(np.float64)
    luma = rgba[..., 0] * BT601[0] + rgba[..., 1] * BT601[1] + rgba[..., 2] * BT601[2]  # alpha dropped
    np.testing.assert_allclose(read_tiff(frames / f"{ok.loc['rgba.png', 'image_id']}.tif"), luma, rtol=1e-6)
    import tifffile

    grey = tifffile.imread(raw / "grey_alpha.tif")[..., 0]
    np.testing.assert_array_equal(read_tiff(frames / f"{ok.loc['grey_alpha.tif', 'image_id']}.tif"), grey)
    assert list(index.loc[index["source_path"] == "cube.fits", "frame"]) == [0, 1]
    assert {p.stem for p in frames.glob("*.tif")} == set(index.loc[index["status"] == "ok", "image_id"])


def test_conflicting_copies_both_skipped_and_written_nowhere(extracted) -> None:
    _, _, index, frames = extracted
    ct = index[index["source_path"].str.startswith("ct_")]
    assert (ct["status"] == "skipped").all() and ct["reason"].str.startswith("conflict:").all()
    assert not any(p.name.startswith("ct_") for p in frames.glob("*.tif"))


class _Panic(BaseException):
    """Stands in for pyo3's PanicException, which is a BaseException."""


def test_base_exceptions_from_decoders_become_read_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pydicom.dataset

    from scisr.io import ReadError
    from scisr.io.readers import read_frames

    def boom(self):
        raise _Panic("index out of bounds")

    src = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small_RLE.dcm"
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(boom))
    with pytest.raises(ReadError, match=r"MR_small_RLE.dcm: cannot decode RLE Lossless pixel data .*_Panic"):
        read_frames(src)

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(interrupt))
    with pytest.raises(KeyboardInterrupt):
        read_frames(src)


def test_cli_info_one_line_per_bad_file(extracted, capsys: pytest.CaptureFixture) -> None:
    raw, cases, _, _ = extracted
    copies = ("duplicate", "another encoding")  # readable copies: extract skips them, info reads them
    bad = [
        c.name
        for c in cases
        if c.status == "skipped" and not c.name.startswith("ct_") and not any(word in c.reason for word in copies)
    ]
    bad = [n for n in bad if n not in {"tiny.png", "nan_only.fits", "constant.fits"}]  # readable; extract skips them
    code = main(["info", "--max-bytes", str(LIMIT), *(str(raw / n) for n in bad), str(raw / "mr_intact.dcm")])
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith(str(raw))]
    assert code == 2 and len(lines) == len(bad)  # 2: some of them are readable files that hold no image
    assert "Traceback" not in err and out.count("\n") == 1 and "mr_intact.dcm\tframe 0\t64x64" in out
