"""Where an ``Instances``' masks live, and the forms they can be read in (design.md §2).

Three storages share one interface:

- :class:`LazyMasks`: what the network made. The kept instances' mask probabilities at the
  feature stride plus the letterbox geometry, on the backend's device (a torch tensor, CUDA or
  CPU, or a numpy array for ONNX Runtime): 100 instances of a 1344x800 input hold 6.7 MB.
  Full-size masks are pasted only when read (``postprocess.paste_masks``, the very computation
  that made them eagerly before).
- :class:`DenseMasks`: full-size bool masks someone already has (``Instances(masks=array)``).
- :class:`RLEMasks`: COCO RLE strings (Triton responses), decoded when read.

Every form is the full mask's own, bit for bit: ``full`` (all, [N, H, W]), ``mask(i)``,
``crops`` (each mask cut to its tight box), ``rle`` (pycocotools' compressed COCO RLE), and
``polygons``. Only ``full`` costs N full-size images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

# Full-size float masks are made this many pixels at a time (about 64 MB of float32).
CHUNK_PIXELS = 16_000_000
# A low-resolution cell below mask_thr - MARGIN cannot make a full-size pixel pass mask_thr: each
# pixel is a convex combination of at most 4x4 cells, computed with an error below 1e-5.
MARGIN = 1e-3
# Two float32 evaluations of the same pixel (a box-sized product and the full-size one sum the
# same <= 4 + 4 non-negative terms in another order) differ by at most ~14 units in the last
# place of a value <= 1, under 1e-6; a pixel closer to mask_thr is settled by the full-size
# computation itself.
UNSURE = 1e-6
# Boxes on the CPU: each mask's edges are found by scanning lines inward from its candidate
# region's sides, in bands that start this many lines wide and double; only the lines up to the
# first one with a pixel above the threshold are computed.
FIRST_BAND = 8


class Masks:
    """N masks of one image; subclasses store them, this class derives the cheaper forms."""

    image_size: tuple[int, int]

    def __len__(self) -> int:
        raise NotImplementedError

    def select(self, index) -> "Masks":
        """The masks at ``index`` (a slice, integer array or bool array)."""
        raise NotImplementedError

    def full(self) -> np.ndarray:
        """bool [N, H, W]."""
        raise NotImplementedError

    def mask(self, i: int) -> np.ndarray:
        """bool [H, W], one mask."""
        return self.select([i]).full()[0]

    def crops(self, boxes: np.ndarray) -> list[np.ndarray]:
        """Each mask cut to its tight box (``boxes``: the masks' own, x1, y1, x2, y2)."""
        out = []
        for i, (x1, y1, x2, y2) in enumerate(_int_boxes(boxes)):
            out.append(np.ascontiguousarray(self.mask(i)[y1:y2, x1:x2]))
        return out

    def rle(self, boxes: np.ndarray) -> list[dict]:
        """COCO RLE of each mask: ``{"size": [H, W], "counts": bytes}``, as ``pycocotools.mask.encode``."""
        h, w = self.image_size
        return [{"size": [h, w], "counts": encode_counts(crop_counts(crop, y1, x1, h, w))}
                for crop, (x1, y1, _, _) in zip(self.crops(boxes), _int_boxes(boxes))]

    def polygons(self, boxes: np.ndarray) -> list[list[np.ndarray]]:
        """Each mask's outer contours (OpenCV, ``CHAIN_APPROX_SIMPLE``): a list of int32 [K, 2] (x, y)
        arrays per mask, in image pixels."""
        import cv2

        out = []
        for crop, (x1, y1, _, _) in zip(self.crops(boxes), _int_boxes(boxes)):
            if crop.size == 0:
                out.append([])
                continue
            contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                           offset=(int(x1), int(y1)))
            out.append([c.reshape(-1, 2).astype(np.int32) for c in contours])
        return out

    @property
    def nbytes(self) -> int:
        """Bytes this storage holds."""
        raise NotImplementedError


class DenseMasks(Masks):
    """Full-size bool masks [N, H, W] given as they are."""

    def __init__(self, masks: np.ndarray):
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must be bool [N, H, W], got shape {list(masks.shape)}")
        self.masks = masks if masks.dtype == bool else masks.astype(bool)
        self.image_size = (int(masks.shape[1]), int(masks.shape[2]))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def select(self, index) -> "DenseMasks":
        return DenseMasks(self.masks[index])

    def full(self) -> np.ndarray:
        return self.masks

    def mask(self, i: int) -> np.ndarray:
        return self.masks[i]

    @property
    def nbytes(self) -> int:
        return int(self.masks.nbytes)


class RLEMasks(Masks):
    """COCO RLE ``counts`` strings (compressed) of masks of an H x W image, decoded when read."""

    def __init__(self, counts: Sequence[bytes], image_size: tuple[int, int]):
        self.counts = list(counts)
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def __len__(self) -> int:
        return len(self.counts)

    def select(self, index) -> "RLEMasks":
        return RLEMasks(np.asarray(self.counts + [b""], dtype=object)[:-1][index].tolist(), self.image_size)

    def full(self) -> np.ndarray:
        h, w = self.image_size
        out = np.zeros((len(self), h, w), bool)
        for i in range(len(self)):
            out[i] = self.mask(i)
        return out

    def mask(self, i: int) -> np.ndarray:
        from pycocotools import mask as mask_utils

        h, w = self.image_size
        return mask_utils.decode({"size": [h, w], "counts": self.counts[i]}).astype(bool)

    def rle(self, boxes: np.ndarray) -> list[dict]:
        h, w = self.image_size
        return [{"size": [h, w], "counts": c} for c in self.counts]

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.counts)


class LazyMasks(Masks):
    """Mask probabilities at the feature stride [N, Hp/s, Wp/s] of the padded input, pasted on read.

    Args:
        probs: torch tensor (any device) or numpy array, float; only the kept instances.
        box: the image's :class:`csrinfer.runtime.preprocess.Letterbox`.
        mask_thr: binarisation threshold.

    On a GPU every form is cut from full-size masks pasted there (a chunk at a time), so only
    bits, boxes, crops or run lengths cross to the host. On the CPU a box comes from the lines
    scanned inward from each side up to the mask's edge, and a crop from the pixels of its box
    alone (a box-sized product); where a deciding pixel lies within ``UNSURE`` of the threshold
    the full-size product decides, so every form equals ``full`` bit for bit.
    """

    def __init__(self, probs, box, mask_thr: float = 0.5):
        self.probs = probs
        self.box = box
        self.mask_thr = float(mask_thr)
        self.image_size = tuple(int(v) for v in box.original)

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    @property
    def device(self) -> str:
        return str(self.probs.device) if hasattr(self.probs, "device") and not isinstance(self.probs, np.ndarray) else "cpu"

    @property
    def on_gpu(self) -> bool:
        return self.device != "cpu"

    @property
    def nbytes(self) -> int:
        return int(self.probs.numel() * self.probs.element_size()) if _is_torch(self.probs) else int(self.probs.nbytes)

    def select(self, index) -> "LazyMasks":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        if _is_torch(self.probs) and not isinstance(index, slice):
            import torch

            index = torch.as_tensor(np.asarray(index), device=self.probs.device)
            if index.dtype == torch.bool:
                index = torch.nonzero(index).flatten()
        return LazyMasks(self.probs[index], self.box, self.mask_thr)

    # -- full-size pasting, the definition of every mask -------------------------------------

    def _probs(self, start: int, end: int):
        import torch

        p = self.probs[start:end]
        p = torch.from_numpy(np.ascontiguousarray(p)) if isinstance(p, np.ndarray) else p
        return p.float()

    def _paste(self, start: int, end: int):
        """torch bool [end - start, H, W] on the masks' device."""
        from csrinfer.runtime.paste import paste_masks

        return paste_masks(self._probs(start, end), self.box, self.mask_thr)

    def _chunks(self):
        h, w = self.image_size
        step = max(1, CHUNK_PIXELS // (h * w))
        for start in range(0, len(self), step):
            yield start, min(len(self), start + step)

    def full(self) -> np.ndarray:
        h, w = self.image_size
        n = len(self)
        if not self.on_gpu:
            out = np.empty((n, h, w), bool)
            for start, end in self._chunks():
                out[start:end] = self._paste(start, end).numpy()
            return out
        from csrinfer.runtime.paste import pack_bits

        bits = np.empty((n, h, (w + 7) // 8), np.uint8)  # 8x fewer bytes to copy off the GPU
        for start, end in self._chunks():
            bits[start:end] = pack_bits(self._paste(start, end)).cpu().numpy()
        return np.unpackbits(bits, axis=-1, count=w).view(bool)

    def mask(self, i: int) -> np.ndarray:
        return self._paste(i, i + 1)[0].cpu().numpy()

    # -- boxes, crops and RLE without N full-size images ----------------------------------------

    def boxes(self) -> np.ndarray:
        """float32 [N, 4] tight boxes (x1, y1, x2, y2, exclusive ends) of the full-size masks."""
        if self.on_gpu:
            return self.boxes_from_full_paste()
        boxes = np.zeros((len(self), 4), np.float32)
        for i, region in enumerate(self._candidate_regions()):
            if region is None:
                continue
            edges = self._edges(i, *region)
            if edges is _UNDECIDED:  # a pixel at the threshold decides the box: the full-size product settles it
                boxes[i] = _box_of(self.mask(i))
            elif edges is not None:
                boxes[i] = edges
        return boxes

    def boxes_from_full_paste(self) -> np.ndarray:
        """The boxes from every mask pasted at full size, a chunk at a time; only the rows' and
        columns' extents leave the masks' device (the GPU's way, and the CPU's reference)."""
        from csrinfer.boxes import boxes_from_extents

        h, w = self.image_size
        rows, cols = np.empty((len(self), h), bool), np.empty((len(self), w), bool)
        for start, end in self._chunks():
            pasted = self._paste(start, end)
            rows[start:end], cols[start:end] = pasted.any(2).cpu().numpy(), pasted.any(1).cpu().numpy()
        return boxes_from_extents(rows, cols)

    def _edges(self, i: int, y0: int, y1: int, x0: int, x1: int):
        """Mask ``i``'s box (x1, y1, x2, y2) within rows y0:y1 and columns x0:x1, None if no pixel
        passes, ``_UNDECIDED`` if a line's decision rests on a pixel within ``UNSURE`` of the threshold.

        Top and bottom: bands of rows, ``(rows[band] @ probs) @ cols.T``, scanned inward from each
        side; left and right: bands of columns between them, ``rows @ (probs @ cols[band].T)``
        (the narrow product first: a band costs its lines, not the region). A noisy mask stops at
        the first band, an object-like one after its margin within the candidate region.
        """
        rows, cols = self._numpy_matrices
        row_lo, row_hi, col_lo, col_hi = self._supports()
        a0, a1 = _span((row_lo < y1) & (row_hi > y0))  # the cells weighing into the region
        b0, b1 = _span((col_lo < x1) & (col_hi > x0))
        probs = self._numpy_probs[i, a0:a1, b0:b1]
        r, c = rows[y0:y1, a0:a1], cols[x0:x1, b0:b1]
        row_max = lambda s, e: ((r[s:e] @ probs) @ c.T).max(1)  # noqa: E731
        top = _first_hit(row_max, y1 - y0, self.mask_thr)
        if top is None or top is _UNDECIDED:
            return top
        bottom = _first_hit(row_max, y1 - y0, self.mask_thr, from_end=True)
        if bottom is _UNDECIDED:
            return bottom
        r = r[top:bottom + 1]
        column_max = lambda s, e: (r @ (probs @ c[s:e].T)).max(0)  # noqa: E731
        left = _first_hit(column_max, x1 - x0, self.mask_thr)
        right = _first_hit(column_max, x1 - x0, self.mask_thr, from_end=True)
        if left is _UNDECIDED or right is _UNDECIDED or left is None or right is None:
            return _UNDECIDED  # columns met an unsure pixel (the rows found a sure one, so some column has it)
        return (x0 + left, y0 + top, x0 + right + 1, y0 + bottom + 1)

    def crops(self, boxes: np.ndarray) -> list[np.ndarray]:
        boxes = _int_boxes(boxes)
        if self.on_gpu:
            out = []
            for start, end in self._chunks():
                pasted = self._paste(start, end)
                for j, (x1, y1, x2, y2) in enumerate(boxes[start:end]):
                    out.append(pasted[j, y1:y2, x1:x2].cpu().numpy())
            return out
        out = []
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            if x2 <= x1 or y2 <= y1:
                out.append(np.zeros((max(0, y2 - y1), max(0, x2 - x1)), bool))
                continue
            sure, unsure = self._region(i, y1, y2, x1, x2)
            out.append(np.ascontiguousarray(self.mask(i)[y1:y2, x1:x2]) if unsure.any() else sure)
        return out

    def rle(self, boxes: np.ndarray) -> list[dict]:
        # From full-size pastes a chunk at a time, on the CPU too: the box-region route (crops)
        # falls back to a full paste per mask whenever a pixel sits within UNSURE of the
        # threshold, which large masks nearly always have (slower than one chunked paste).
        import torch

        h, w = self.image_size
        out = []
        if not self.on_gpu:  # pycocotools' own encoder on each chunk: never N full-size masks at once
            from pycocotools import mask as mask_utils

            for start, end in self._chunks():
                chunk = self._paste(start, end).numpy().transpose(1, 2, 0)
                out += [{"size": [h, w], "counts": r["counts"]}
                        for r in mask_utils.encode(np.asfortranarray(chunk.astype(np.uint8)))]
            return out
        for start, end in self._chunks():
            # Column-major (COCO's order) change points, found on the GPU: only they come off.
            flat = self._paste(start, end).transpose(1, 2).reshape(end - start, h * w)
            changes = torch.nonzero(flat[:, 1:] != flat[:, :-1]).cpu().numpy()  # sorted by mask, then position
            first, last = flat[:, 0].cpu().numpy(), flat[:, -1].cpu().numpy()
            bounds = np.searchsorted(changes[:, 0], np.arange(end - start + 1))
            for j in range(end - start):
                points = changes[bounds[j]:bounds[j + 1], 1] + 1
                if first[j]:
                    points = np.concatenate([[0], points])
                if last[j]:  # a last run of ones ends at the last pixel
                    points = np.concatenate([points, [h * w]])
                out.append({"size": [h, w], "counts": encode_counts(counts_from_changes(points, h * w))})
        return out

    def _matrices(self):
        from csrinfer.runtime.paste import resize_matrix

        b = self.box
        _, ph, pw = self.probs.shape
        return (resize_matrix(ph, b.padded[0], b.resized[0], b.original[0]),
                resize_matrix(pw, b.padded[1], b.resized[1], b.original[1]))

    def _region(self, i: int, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """(pixels above the threshold, pixels within ``UNSURE`` of it) of rows y0:y1, columns x0:x1.

        Only the cells that weigh into the region take part (the others' weights are zero), so
        the product costs the region's size, not the image's.
        """
        rows, cols = self._numpy_matrices
        row_lo, row_hi, col_lo, col_hi = self._supports()
        a0, a1 = _span((row_lo < y1) & (row_hi > y0))  # the cells weighing into these rows
        b0, b1 = _span((col_lo < x1) & (col_hi > x0))
        probs = self._numpy_probs[i, a0:a1, b0:b1]
        # numpy, not torch: torch.matmul of these small sliced shapes ran ~15x slower on the 2-core
        # CPU (100 regions: 2.4 s against 0.15 s); the values differ from the full-size product
        # by less than UNSURE either way.
        values = rows[y0:y1, a0:a1] @ (probs @ cols[x0:x1, b0:b1].T)
        return values > self.mask_thr, np.abs(values - self.mask_thr) <= UNSURE

    @functools.cached_property
    def _numpy_matrices(self):
        return tuple(m.numpy() for m in self._matrices())

    @functools.cached_property
    def _numpy_probs(self) -> np.ndarray:
        p = self.probs.float().cpu().numpy() if _is_torch(self.probs) else self.probs
        return np.asarray(p, np.float32)

    @functools.cached_property
    def _support_cache(self):
        rows, cols = self._matrices()
        return (*_support(rows.numpy()), *_support(cols.numpy()))

    def _supports(self):
        """Per cell row (column), the first and one-past-last image row (column) it weighs into."""
        return self._support_cache

    def _candidate_regions(self):
        """Per mask, (y0, y1, x0, x1) outside which no pixel can pass the threshold, or None."""
        row_lo, row_hi, col_lo, col_hi = self._supports()
        candidates = self._numpy_probs > self.mask_thr - MARGIN
        any_row, any_col = candidates.any(2), candidates.any(1)
        for i in range(len(self)):
            r, c = np.flatnonzero(any_row[i]), np.flatnonzero(any_col[i])
            if r.size == 0:
                yield None
                continue
            y0, y1 = row_lo[r[0]:r[-1] + 1].min(), row_hi[r[0]:r[-1] + 1].max()
            x0, x1 = col_lo[c[0]:c[-1] + 1].min(), col_hi[c[0]:c[-1] + 1].max()
            yield (int(y0), int(y1), int(x0), int(x1)) if y1 > y0 and x1 > x0 else None


_UNDECIDED = object()  # an edge that rests on a pixel within UNSURE of the threshold


def _first_hit(line_max, n: int, thr: float, from_end: bool = False):
    """The first line (of ``n``, counted from the start, or from the end with ``from_end``) whose
    largest value is surely above ``thr``; None if every line is surely below; ``_UNDECIDED`` if a
    line before it is neither. ``line_max(s, e)`` gives lines s:e's largest values."""
    done, size = 0, FIRST_BAND
    while done < n:
        take = min(size, n - done)
        s, e = (n - done - take, n - done) if from_end else (done, done + take)
        m = line_max(s, e)
        if from_end:
            m = m[::-1]
        sure = np.flatnonzero(m > thr + UNSURE)
        first = int(sure[0]) if sure.size else take
        if (m[:first] >= thr - UNSURE).any():
            return _UNDECIDED
        if sure.size:
            return (n - 1 - done - first) if from_end else (done + first)
        done, size = done + take, size * 2
    return None


def _span(used: np.ndarray) -> tuple[int, int]:
    """First and one-past-last True index of a bool vector ((0, 0) when none)."""
    index = np.flatnonzero(used)
    return (int(index[0]), int(index[-1]) + 1) if index.size else (0, 0)


def _support(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a resize matrix [out, size]: per input index, the first and one-past-last output index
    it weighs into (out, 0 where it weighs into none)."""
    nz = matrix != 0
    out = nz.shape[0]
    has = nz.any(0)
    lo = np.where(has, nz.argmax(0), out)
    hi = np.where(has, out - nz[::-1].argmax(0), 0)
    return lo, hi


def _tight(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    t = _tight(mask)
    return (0.0, 0.0, 0.0, 0.0) if t is None else (t[2], t[0], t[3], t[1])


def _int_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, np.float64).reshape(-1, 4).round().astype(np.int64)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def crop_counts(crop: np.ndarray, y0: int, x0: int, height: int, width: int) -> np.ndarray:
    """COCO run lengths (column-major, starting with a run of zeros) of an H x W mask that is
    zero outside ``crop`` placed at (y0, x0)."""
    total = height * width
    ch, cw = crop.shape
    if crop.size == 0 or not crop.any():
        return np.array([total], np.int64)
    columns = np.zeros((cw, ch + 2), bool)  # each column padded by a zero above and below
    columns[:, 1:-1] = crop.T
    c, r = np.nonzero(columns[:, 1:] != columns[:, :-1])
    points = (x0 + c).astype(np.int64) * height + y0 + r
    # A run reaching a column's bottom that goes on at the next column's top is one run.
    unique, seen = np.unique(points, return_counts=True)
    return counts_from_changes(unique[seen == 1], total)


def counts_from_changes(points: np.ndarray, total: int) -> np.ndarray:
    """Sorted positions where the column-major mask changes value (0: it starts with a one)
    -> COCO run lengths (a last run of ones ends the list, as pycocotools writes it)."""
    edges = np.concatenate([[0], points, [] if len(points) and points[-1] == total else [total]])
    return np.diff(edges).astype(np.int64)


def encode_counts(counts) -> bytes:
    """Run lengths -> pycocotools' compressed RLE string (``rleToString``: each count as the
    difference to the count two back, 5 bits a character, offset 48)."""
    counts = [int(v) for v in counts]
    out = bytearray()
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(c + 48)
    return bytes(out)
