"""Per-image normalization, its inverse, the centred crop and the normalize phase."""

import numpy as np
import pandas as pd
import pytest
from conftest import dataset_settings

from scisr.index import INDEX_COLUMNS, write_index
from scisr.io.files import read_tiff, write_tiff
from scisr.prepare.normalize import crop_to_multiple, denormalize, normalize_dataset, normalize_image, pixel_digest

NORMALIZE = dataset_settings("normalize")  # the schema's defaults, as the normalize rule passes them


def test_round_trip_within_percentiles():
    rng = np.random.default_rng(0)
    image = rng.normal(1000, 200, (64, 64))
    norm, params = normalize_image(image, **(NORMALIZE | {"low_percentile": 1, "high_percentile": 99}))
    assert norm.dtype == np.float32 and norm.min() >= 0 and norm.max() <= 1
    inside = (image >= params["low_value"]) & (image <= params["high_value"])
    back = denormalize(norm, params)
    np.testing.assert_allclose(back[inside], image[inside], rtol=1e-5)
    assert params["stretch"] == "none" and params["nan_count"] == 0


def test_asinh_round_trip_monotonic_and_bounded():
    image = np.linspace(-5, 105, 111 * 3).reshape(3, 111)
    norm, params = normalize_image(
        image, **(NORMALIZE | {"low_percentile": 5, "high_percentile": 95, "stretch": "asinh"})
    )
    flat = norm.ravel()
    assert flat.min() >= 0 and flat.max() <= 1
    assert np.all(np.diff(flat.astype(np.float64)) >= 0)
    assert norm.ravel()[image.ravel().argmax()] == pytest.approx(1.0)
    inside = (image >= params["low_value"]) & (image <= params["high_value"])
    np.testing.assert_allclose(denormalize(norm, params)[inside], image[inside], rtol=1e-4, atol=1e-4)
    # asinh lifts faint values above the linear mapping
    linear, _ = normalize_image(image, **(NORMALIZE | {"low_percentile": 5, "high_percentile": 95}))
    assert np.all(norm[inside] >= linear[inside] - 1e-6)


def test_nan_become_zero_and_are_counted():
    image = np.arange(100, dtype=np.float32).reshape(10, 10)
    image[0, :3] = np.nan
    norm, params = normalize_image(image, **NORMALIZE)
    assert params["nan_count"] == 3
    assert np.all(norm[0, :3] == 0) and np.isfinite(norm).all()


def test_constant_image_raises_clear_error():
    with pytest.raises(ValueError, match="constant"):
        normalize_image(np.full((8, 8), 3.0), **NORMALIZE)
    with pytest.raises(ValueError, match="stretch"):
        normalize_image(np.arange(16.0).reshape(4, 4), **(NORMALIZE | {"stretch": "log"}))


@pytest.mark.parametrize(
    ("shape", "scale", "expected", "offset"),
    [
        ((10, 13), 4, (8, 12), (1, 0)),
        ((16, 16), 4, (16, 16), (0, 0)),
        ((7, 11), 2, (6, 10), (0, 0)),
        ((1027, 1031), 4, (1024, 1028), (1, 1)),
    ],
)
def test_crop_to_multiple(shape, scale, expected, offset):
    image = np.arange(np.prod(shape)).reshape(shape)
    cropped, (top, left) = crop_to_multiple(image, scale)
    assert cropped.shape == expected and (top, left) == offset
    assert cropped[0, 0] == image[top, left]


def _index(rows, path):
    """Write an index.tsv through the extract phase's own writer."""
    defaults = dict.fromkeys(INDEX_COLUMNS, "") | {"frame": 0, "rows": 0, "cols": 0}
    return write_index([defaults | row for row in rows], path)


def test_normalize_dataset(tmp_path):
    frames, out = tmp_path / "frames", tmp_path / "norm"
    rng = np.random.default_rng(1)
    write_tiff(frames / "a.tif", rng.normal(50, 10, (30, 41)))
    write_tiff(frames / "flat.tif", np.full((16, 16), 7.0))
    write_tiff(frames / "bad.tif", rng.random((8, 8)))
    _index(
        [
            {"image_id": "a", "subject_id": "s1", "status": "ok"},
            {"image_id": "flat", "subject_id": "s2", "status": "ok"},
            {"image_id": "bad", "subject_id": "s3", "status": "failed", "reason": "unreadable"},
        ],
        tmp_path / "index.tsv",
    )
    out.mkdir()
    (out / "stale.tif").write_bytes(b"old")
    table = normalize_dataset(
        tmp_path / "index.tsv",
        frames,
        out,
        tmp_path / "params.tsv",
        low_percentile=0.5,
        high_percentile=99.5,
        stretch="none",
        asinh_a=0.1,
        scale=4,
    )
    assert sorted(p.name for p in out.glob("*.tif")) == ["a.tif"]
    norm = read_tiff(out / "a.tif")
    assert norm.shape == (28, 40) and norm.min() >= 0 and norm.max() <= 1
    params = pd.read_csv(tmp_path / "params.tsv", sep="\t", dtype={"image_id": str})
    assert list(params.columns) == [
        "image_id",
        "low_value",
        "high_value",
        "stretch",
        "asinh_a",
        "nan_count",
        "crop_top",
        "crop_left",
        "rows",
        "cols",
        "status",
        "reason",
        "sha256",
    ]
    assert list(params["image_id"]) == ["a", "flat"] and len(table) == 2
    ok = params.set_index("image_id").loc["a"]
    assert ok["status"] == "ok" and (ok["rows"], ok["cols"], ok["crop_top"], ok["crop_left"]) == (28, 40, 1, 0)
    assert ok["sha256"] == pixel_digest(norm)  # the written pixels' digest: the split plan's content key
    flat = params.set_index("image_id").loc["flat"]
    assert flat["status"] == "skipped" and "constant" in flat["reason"]
    # the recorded mapping takes the written pixels back to physical units
    original = read_tiff(frames / "a.tif")[1:29, 0:40]
    inside = (original >= ok["low_value"]) & (original <= ok["high_value"])
    back = denormalize(norm, ok.to_dict())
    np.testing.assert_allclose(back[inside], original[inside], rtol=1e-5)


def test_normalize_dataset_missing_frame_named(tmp_path):
    _index([{"image_id": "gone", "subject_id": "s", "status": "ok"}], tmp_path / "index.tsv")
    with pytest.raises(FileNotFoundError, match=r"gone.tif"):
        normalize_dataset(
            tmp_path / "index.tsv",
            tmp_path,
            tmp_path / "out",
            tmp_path / "params.tsv",
            low_percentile=0.5,
            high_percentile=99.5,
            stretch="none",
            asinh_a=0.1,
            scale=4,
        )


def test_work_units_give_the_single_job_result(tmp_path):
    """Normalize split into work units by subject and gathered equals one job: params.tsv byte for byte (rows in
    index order), the same images; a subject's images stay in one unit."""
    from scisr.prepare.normalize import gather_normalized
    from scisr.units import unit_of

    rng = np.random.default_rng(3)
    frames = tmp_path / "frames"
    rows = []
    for n in range(12):
        subject = f"sub-{n % 5:010d}"
        write_tiff(frames / f"i{n:02d}.tif", rng.normal(50, 10, (20 + n, 33)) if n != 4 else np.full((16, 16), 3.0))
        rows.append({"image_id": f"i{n:02d}", "subject_id": subject, "status": "ok"})
    _index(rows, tmp_path / "index.tsv")
    settings = dict(low_percentile=0.5, high_percentile=99.5, stretch="asinh", asinh_a=0.1, scale=4)
    normalize_dataset(tmp_path / "index.tsv", frames, tmp_path / "one", tmp_path / "one.tsv", **settings)
    units = 3
    assert len({unit_of(r["subject_id"], units) for r in rows}) > 1
    parts = []
    for unit in range(1, units + 1):
        folder = tmp_path / f"u{unit}"
        table = normalize_dataset(
            tmp_path / "index.tsv", frames, folder / "images", folder / "params.tsv", unit=unit, units=units, **settings
        )
        assert {unit_of(f"sub-{int(i[1:]) % 5:010d}", units) for i in table["image_id"]} <= {unit}
        parts.append((folder / "params.tsv", folder / "images"))
    gather_normalized(tmp_path / "index.tsv", parts, tmp_path / "many", tmp_path / "many.tsv")
    assert (tmp_path / "many.tsv").read_bytes() == (tmp_path / "one.tsv").read_bytes()
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "many").iterdir()) and len(names) == 11
    for name in names:
        assert (tmp_path / "many" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
