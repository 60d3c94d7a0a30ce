"""What parsing every file in a reader worker process costs the extract phase.

The extract phase reads each file in a worker process (`scisr.io.isolated.IsolatedReader`) so that a native
crash costs one file. This times `scisr.extract.extract_dataset` on the same raw folders with the reads in
this process (the phase before the worker existed) and in the worker, interleaved, `--repeats` times each,
and prints the medians, the ratio and the worker's start-up time. The indexes of both are checked to agree.

Raw folders are the download phase's output, e.g. the default study's:
  snakemake -c2 resources/raw/{generic,mri,astro}/MANIFEST.tsv
  python bench/reader_isolation.py resources/raw/generic resources/raw/mri resources/raw/astro
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

from scisr.extract import extract_dataset
from scisr.io.isolated import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, IsolatedReader

SECRET = bytes(range(32))
FRAMES = {"pixel_data": ["ORIGINAL", "DERIVED"]}


def run(raw: Path, work: Path, isolated: bool) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    if isolated:
        with IsolatedReader(memory_mb=DEFAULT_MEMORY_MB, timeout_s=DEFAULT_TIMEOUT_S) as reader:
            index = extract_dataset(
                raw,
                raw / "MANIFEST.tsv",
                work / "frames",
                work / "index.tsv",
                secret=SECRET,
                dataset=raw.name,
                frames=FRAMES,
                reader=reader,
            )
    else:
        index = extract_dataset(
            raw,
            raw / "MANIFEST.tsv",
            work / "frames",
            work / "index.tsv",
            secret=SECRET,
            dataset=raw.name,
            frames=FRAMES,
        )
    return time.perf_counter() - start, index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="+", type=Path, help="raw folders holding a MANIFEST.tsv")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    with IsolatedReader(memory_mb=DEFAULT_MEMORY_MB, timeout_s=DEFAULT_TIMEOUT_S) as reader:
        reader.call("scisr.io.readers:sniff", __file__)
    print(f"# worker start-up (python, numpy, pydicom, astropy imports): {time.perf_counter() - start:.2f} s")
    print(f"{'dataset':10} {'files':>6} {'in process s':>13} {'worker s':>9} {'ratio':>6}")
    totals = [0.0, 0.0]
    for raw in args.raw:
        times: dict[bool, list[float]] = {False: [], True: []}
        indexes = {}
        with tempfile.TemporaryDirectory() as tmp:
            for repeat in range(args.repeats):
                for isolated in (False, True) if repeat % 2 == 0 else (True, False):
                    seconds, indexes[isolated] = run(raw, Path(tmp) / f"{isolated}-{repeat}", isolated)
                    times[isolated].append(seconds)
        pd.testing.assert_frame_equal(indexes[False], indexes[True])
        here, worker = statistics.median(times[False]), statistics.median(times[True])
        totals[0] += here
        totals[1] += worker
        files = len(pd.read_csv(raw / "MANIFEST.tsv", sep="\t"))
        print(f"{raw.name:10} {files:6d} {here:13.2f} {worker:9.2f} {worker / here:6.2f}")
    print(f"{'all':10} {'':6} {totals[0]:13.2f} {totals[1]:9.2f} {totals[1] / totals[0]:6.2f}")


if __name__ == "__main__":
    main()
