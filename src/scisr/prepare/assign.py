"""Subject groups (units) to splits and folds, balanced by pixel area, from a seed and content keys only.

`assign_units` gives a single holdout (train/val/test by the fractions), `assign_folds` k folds, and
`fold_assignment` every fold's train/val/test; the order starts from the units' content keys, never from their
(keyed) names, so the same data and seed assign the same way on every installation (`scisr.prepare.split`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from scisr.checks import split_problems

SPLITS = ("train", "val", "test")


def _shuffled(areas: Mapping[str, int], seed: int | Sequence[int], keys: Mapping[str, str] | None) -> list[str]:
    """Unit names in a seeded random order that starts from their content keys (by name when None)."""
    names = sorted(areas, key=lambda n: (keys[n], n)) if keys is not None else sorted(areas)
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))]


def _fill(order: Sequence[str], areas: Mapping[str, int], fractions: Mapping[str, float]) -> dict[str, str]:
    """Give each unit, in `order`, to the part furthest below its pixel-area target; then every part gets at least
    one unit (the smallest unit of the part holding the most). Ties go to the part named last in `fractions`."""
    parts = list(fractions)
    total = float(sum(areas[name] for name in order))
    filled = dict.fromkeys(parts, 0.0)
    assignment: dict[str, str] = {}
    for name in order:
        part = max(reversed(parts), key=lambda s: fractions[s] * total - filled[s])
        assignment[name] = part
        filled[part] += areas[name]
    for part in parts:
        if part not in assignment.values():
            members = {s: [n for n in order if assignment[n] == s] for s in parts}
            donor = max(parts, key=lambda s: len(members[s]))
            moved = min(members[donor], key=lambda n: areas[n])
            assignment[moved] = part
    return assignment


def assign_units(
    areas: Mapping[str, int], fractions: Mapping[str, float], seed: int, keys: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Shuffle units with `seed` and give each to the split furthest below its pixel-area target.

    The shuffle starts from the units sorted by `keys` (content keys; by name when None), so it does not
    depend on how the units are named. Ties go to test, then val, then train.
    """
    problems = split_problems(fractions, None, 1)
    if problems:
        raise ValueError("; ".join(problems))
    return _fill(_shuffled(areas, seed, keys), areas, {name: float(fractions[name]) for name in SPLITS})


def assign_folds(
    areas: Mapping[str, int], folds: int, seed: int, keys: Mapping[str, str] | None = None
) -> dict[str, int]:
    """Units to folds 1..`folds` balanced by pixels: largest first (seeded content order among equal sizes),
    each to the fold with the fewest pixels so far (then the fewest units, then the lowest number)."""
    if folds < 1 or len(areas) < folds:
        raise ValueError(f"{len(areas)} unit(s) cannot fill {folds} fold(s)")
    order = sorted(_shuffled(areas, seed, keys), key=lambda n: -areas[n])  # stable: shuffled among equals
    pixels, counts = [0] * folds, [0] * folds
    out: dict[str, int] = {}
    for name in order:
        fold = min(range(folds), key=lambda f: (pixels[f], counts[f], f))
        out[name] = fold + 1
        pixels[fold] += areas[name]
        counts[fold] += 1
    return out


def fold_assignment(
    areas: Mapping[str, int],
    folds: int,
    fractions: Mapping[str, float],
    seed: int,
    keys: Mapping[str, str],
    where: str,
) -> dict[int, dict[str, str]]:
    """{fold: {unit: train|val|test}}: fold i tests its units and splits the others between train and val."""
    need = folds + 1 if folds > 2 else folds + 2
    if len(areas) < need:
        raise ValueError(
            f"{where}: {len(areas)} subject group(s) for study.folds {folds}; cross-validation tests each group in "
            f"exactly one fold and trains and validates on the other folds' groups, so {folds} folds need at least "
            f"{need} groups (under folds a lone image or volume is one group: no tiles or slabs). Lower study.folds "
            "or add subjects"
        )
    fold_of = assign_folds(areas, folds, seed, keys)
    rest_fractions = {"train": float(fractions["train"]), "val": float(fractions["val"])}
    out = {}
    for fold in range(1, folds + 1):
        rest = {name: area for name, area in areas.items() if fold_of[name] != fold}
        if len(rest) < 2:
            sizes = ", ".join(str(sum(1 for f in fold_of.values() if f == i)) for i in range(1, folds + 1))
            raise ValueError(
                f"{where}: fold {fold} leaves {len(rest)} group(s) to train and validate on (groups per fold, "
                f"balanced by pixels: {sizes}); lower study.folds or add subjects"
            )
        parts = _fill(_shuffled(rest, [seed, fold], keys), rest, rest_fractions)
        out[fold] = {name: ("test" if fold_of[name] == fold else parts[name]) for name in areas}
    return out
