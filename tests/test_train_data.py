"""The training store (scisr.prepare.store): the same batches as pairs held in memory, written once."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from train_helpers import make_split

from scisr.io.files import read_png16, write_png16
from scisr.prepare.store import open_store
from scisr.train.data import PatchSampler, load_pairs


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = make_split(tmp_path_factory.mktemp("split"), size=64, n_train=5, n_val=1)
    # images of different sizes, so offsets and row strides differ between pairs
    rng = np.random.default_rng(3)
    for name, (h, w) in {"wide": (48, 96), "tall": (88, 40)}.items():
        hr = rng.random((h, w))
        write_png16(root / "train" / "HR" / f"{name}.png", hr)
        write_png16(root / "train" / "LR" / f"{name}.png", hr.reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3)))
    return root


def test_the_store_samples_bit_identical_batches_to_pairs_in_memory(split, tmp_path):
    memory = load_pairs(split / "train", 4)
    store = open_store(split / "train", 4, tmp_path / "store")
    assert store.names == memory.names and len(store) == 7  # the same content order
    for i in range(len(store)):
        lr_a, hr_a = memory.image(i)
        lr_b, hr_b = store.image(i)
        assert np.array_equal(lr_a, lr_b) and np.array_equal(hr_a, hr_b)
        # and exactly the floats read_png16 gives
        assert np.array_equal(hr_b, read_png16(split / "train" / "HR" / store.names[i]))
    a, b = PatchSampler(memory, 4, 32, seed=7), PatchSampler(store, 4, 32, seed=7)
    for _ in range(20):
        (lr_a, hr_a), (lr_b, hr_b) = a.sample(4), b.sample(4)
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)
    assert torch.equal(a.state(), b.state())


def test_the_store_is_written_once_and_again_when_the_part_changes(split, tmp_path):
    first = open_store(split / "train", 4, tmp_path / "store")
    hr_file = tmp_path / "store" / "hr.u16"
    written = hr_file.stat().st_mtime_ns
    again = open_store(split / "train", 4, tmp_path / "store")
    assert hr_file.stat().st_mtime_ns == written and again.names == first.names  # reused
    assert hr_file.stat().st_size == sum(np.prod(first.hr_shape(i)) * 2 for i in range(len(first)))
    changed = split / "train" / "HR" / "wide.png"
    original = changed.read_bytes()
    try:
        write_png16(changed, np.full((48, 96), 0.5))
        os.utime(changed, ns=(written + 10**9, written + 10**9))
        rebuilt = open_store(split / "train", 4, tmp_path / "store")
        i = rebuilt.names.index("wide.png")
        assert np.array_equal(rebuilt.image(i)[1], read_png16(changed))
    finally:
        changed.write_bytes(original)


def test_a_missing_lr_partner_or_a_wrong_shape_is_refused(tmp_path):
    root = make_split(tmp_path / "split", n_train=2, n_val=1)
    (root / "train" / "LR" / "im01.png").unlink()
    with pytest.raises(FileNotFoundError, match="missing LR partner"):
        open_store(root / "train", 4, tmp_path / "store")
    write_png16(root / "train" / "LR" / "im01.png", np.zeros((15, 16)))
    with pytest.raises(ValueError, match=r"LR shape \(15, 16\) is not HR shape \(64, 64\) / scale 4"):
        open_store(root / "train", 4, tmp_path / "store")
