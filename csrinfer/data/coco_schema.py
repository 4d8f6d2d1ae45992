"""The structure a COCO instances file must have before anything reads it.

:func:`check_structure` refuses what no reader can use (a missing key, a value of the wrong
type) with one sentence naming the file, the entry and the problem. What is well-formed but
merely degenerate (a polygon of fewer than 3 points, an RLE of another size, an unknown
category) passes here: the training loader skips and counts it, and the evaluation leaves out
of the ground truth what pycocotools cannot rasterize (:mod:`csrinfer.data.coco`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from csrinfer.errors import DatasetError

LISTS = ("images", "annotations", "categories")
SHAPES = "neither polygons (a list of lists of x, y numbers) nor RLE (an object with 'size' and 'counts')"


def check_structure(data, ann_file: Path) -> None:
    """Raise DatasetError unless ``data`` (the parsed JSON) has COCO's instance structure:

    - images: ``id`` int, ``file_name`` non-empty string, ``height`` and ``width`` positive ints;
    - categories (at least one): ``id`` int, ``name`` string;
    - no two images, and no two categories, of one id;
    - annotations: ``id``, ``image_id``, ``category_id`` ints; ``segmentation`` polygons (a list
      of lists of numbers) or RLE (``size`` [height, width], ``counts`` a string or a list of
      non-negative ints); ``area`` a non-negative number and ``iscrowd`` 0 or 1 when present.

    The sentence names the first problem and how many other entries have one.
    """
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {ann_file} is not valid COCO JSON (its top level is "
                           f"{_kind(data)}, not an object)")
    for key in LISTS:
        if key not in data:
            raise DatasetError(f"annotation file {ann_file} has no '{key}' list")
        if not isinstance(data[key], list):
            raise DatasetError(f"annotation file {ann_file} has '{key}' as {_kind(data[key])}, not a list")
    if not data["categories"]:
        raise DatasetError(f"annotation file {ann_file} has no categories")
    problems = [p for key, kind, check in _CHECKS for p in _entry_problems(data[key], key, kind, check)]
    problems += _repeated_ids(data["images"], "image") + _repeated_ids(data["categories"], "category")
    if problems:
        more = f" ({len(problems) - 1} more entries have a problem too)" if len(problems) > 1 else ""
        raise DatasetError(f"annotation file {ann_file} is not valid COCO JSON: {problems[0]}{more}")


def _entry_problems(entries: list, key: str, kind: str, check) -> list[str]:
    problems = []
    for index, entry in enumerate(entries):
        problem = f"is {_kind(entry)}, not an object" if not isinstance(entry, dict) else check(entry)
        if problem:
            problems.append(f"{_name(key, kind, index, entry)} {problem}")
    return problems


def _repeated_ids(entries: list, kind: str) -> list[str]:
    """Two images (or categories) of one id would pool their annotations; annotation ids may
    repeat (nothing refers to them; the evaluation renumbers them)."""
    ids = Counter(e["id"] for e in entries if isinstance(e, dict) and _is_int(e.get("id")))
    return [f"{kind} id {i} is used by {n} {kind} entries" for i, n in ids.items() if n > 1]


def _name(key: str, kind: str, index: int, entry) -> str:
    """'annotation 17' by its id; by its position when the id itself is unusable."""
    if isinstance(entry, dict) and _is_int(entry.get("id")):
        return f"{kind} {entry['id']}"
    return f"the {kind} at index {index} of '{key}'"


def _image(entry: dict) -> str | None:
    return (_int_field(entry, "id") or _text_field(entry, "file_name", empty=False)
            or _int_field(entry, "height", positive=True) or _int_field(entry, "width", positive=True))


def _category(entry: dict) -> str | None:
    return _int_field(entry, "id") or _text_field(entry, "name", empty=True)


def _annotation(entry: dict) -> str | None:
    for key in ("id", "image_id", "category_id"):
        if problem := _int_field(entry, key):
            return problem
    if "segmentation" not in entry:
        return "has no 'segmentation'"
    return _segmentation(entry["segmentation"]) or _area(entry) or _iscrowd(entry)


_CHECKS = (("images", "image", _image), ("categories", "category", _category),
           ("annotations", "annotation", _annotation))


def _segmentation(seg) -> str | None:
    if isinstance(seg, list):
        # Set of element types: C speed on the millions of numbers of MS-COCO's polygons.
        if all(isinstance(p, list) and set(map(type, p)) <= {int, float} for p in seg):
            return None
        return f"has segmentation {_show(seg)}: a polygon segmentation is a list of lists of x, y numbers"
    if not isinstance(seg, dict):
        return f"has segmentation {_show(seg)}, which is {SHAPES}"
    for key in ("size", "counts"):
        if key not in seg:
            return f"has an RLE segmentation without '{key}'"
    size, counts = seg["size"], seg["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v >= 0 for v in size)):
        return f"has an RLE segmentation of size {_show(size)}, not [height, width]"
    if isinstance(counts, str) or (isinstance(counts, list) and all(_is_int(v) and v >= 0 for v in counts)):
        return None
    return f"has RLE counts {_show(counts)}, neither a string nor a list of non-negative integers"


def _area(entry: dict) -> str | None:
    area = entry.get("area", 0)
    if isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area) and area >= 0:
        return None
    return f"has area {_show(area)}, not a non-negative number"


def _iscrowd(entry: dict) -> str | None:
    crowd = entry.get("iscrowd", 0)
    return None if crowd in (0, 1) else f"has iscrowd {_show(crowd)}, not 0 or 1"


def _int_field(entry: dict, key: str, positive: bool = False) -> str | None:
    if key not in entry:
        return f"has no '{key}'"
    value = entry[key]
    if not _is_int(value):
        return f"has {key} {_show(value)}, not an integer"
    if positive and value <= 0:
        return f"has {key} {_show(value)}, not a positive integer"
    return None


def _text_field(entry: dict, key: str, empty: bool) -> str | None:
    if key not in entry:
        return f"has no '{key}'"
    value = entry[key]
    if not isinstance(value, str) or (not empty and not value):
        return f"has {key} {_show(value)}, not a{'' if empty else ' non-empty'} string"
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not an id


def _kind(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _show(value, limit: int = 40) -> str:
    """The value as it reads in the JSON, shortened: '"3"' tells a string from the number 3."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
