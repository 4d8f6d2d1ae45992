"""``ModelInfo``: what a runtime needs to know about a model file (design.md §2).

Exported files describe themselves: the ONNX graph carries these fields in its
``metadata_props`` and a TensorRT plan in its ``model.plan.json`` sidecar, both written by
:meth:`ModelInfo.to_metadata` and read back by :meth:`ModelInfo.from_metadata`; a checkpoint
gives them through its config (:meth:`ModelInfo.from_config`). Every backend exposes one, so
pre- and post-processing never look at the file format.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from csrinfer.contract.graph import INPUT_NAME, OUTPUT_NAMES
from csrinfer.errors import ModelFileError
from csrinfer.config import IMAGENET_MEAN as PAD_VALUE_RGB  # the letterbox pads with the mean: zero after normalisation

FORMAT = "csrinfer-model"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """A model's contract with the runtime.

    Attributes:
        class_names: one name per label.
        category_ids: the dataset category id of each label (COCO results' ``category_id``);
            None for files exported before they were recorded (then label + 1).
        input_size: (H, W) of a static input, or None when H and W are dynamic.
        batch: the static batch size, or None when the batch is dynamic.
        stride: of the output masks relative to the input (8; 4 for the SOLOv2 family).
        score_thr, mask_thr: the inference thresholds the graph was exported with.
        inference: every in-graph post-processing setting (the config's ``inference``).
        short_side, max_size, size_divisor: the resize rule for dynamic inputs (COCO 1x).
        pad_value: RGB 0-255 colour of the padding.
        precision: "fp32" or "fp16".
        name: the config name.
        versions: producing library versions (csrinfer, torch, onnx, ...).
    """

    class_names: tuple[str, ...]
    category_ids: tuple[int, ...] | None = None
    input_size: tuple[int, int] | None = None
    batch: int | None = None
    stride: int = 8
    score_thr: float = 0.1
    mask_thr: float = 0.5
    inference: Mapping = field(default_factory=dict)
    short_side: int = 800
    max_size: int = 1333
    size_divisor: int = 32
    pad_value: tuple[float, float, float] = PAD_VALUE_RGB
    precision: str = "fp32"
    name: str = ""
    versions: Mapping = field(default_factory=dict)

    @property
    def dynamic(self) -> bool:
        """True when H and W are free (inputs follow the resize rule instead of a fixed size)."""
        return self.input_size is None

    @classmethod
    def from_config(cls, cfg, input_size: tuple[int, int] | None = None, batch: int | None = None,
                    **overrides) -> "ModelInfo":
        """From a :class:`csrinfer.config.Config`; ``input_size``/``batch`` None mean dynamic."""
        return cls(
            class_names=tuple(cfg.classes),
            category_ids=tuple(cfg.category_ids),
            input_size=tuple(input_size) if input_size is not None else None,
            batch=batch,
            stride=cfg.model.mask_stride,
            score_thr=cfg.inference.score_thr,
            mask_thr=cfg.inference.mask_thr,
            inference=dataclasses.asdict(cfg.inference),
            short_side=cfg.input.short_side,
            max_size=cfg.input.max_size,
            size_divisor=cfg.input.size_divisor,
            pad_value=tuple(float(v) for v in cfg.input.mean),
            name=cfg.name,
            **overrides,
        )

    def to_metadata(self) -> dict[str, str]:
        """String key/value pairs for ONNX ``metadata_props`` or a JSON sidecar (lists as JSON)."""
        values = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class_names": list(self.class_names),
            "category_ids": list(self.category_ids) if self.category_ids is not None else None,
            "input_size": list(self.input_size) if self.input_size is not None else None,
            "batch": self.batch,
            "dynamic": self.dynamic,
            "stride": self.stride,
            "score_thr": self.score_thr,
            "mask_thr": self.mask_thr,
            "inference": dict(self.inference),
            "short_side": self.short_side,
            "max_size": self.max_size,
            "size_divisor": self.size_divisor,
            "pad_value": list(self.pad_value),
            "precision": self.precision,
            "config_name": self.name,
            "versions": dict(self.versions),
        }
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> "ModelInfo":
        """Read what :meth:`to_metadata` wrote; a file without it is a :class:`ModelFileError`."""
        data = {}
        for key, text in metadata.items():
            try:
                data[key] = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError:
                data[key] = text
        if data.get("format") != FORMAT:
            raise ModelFileError(f"{source} was not exported by csrinfer (its metadata has no "
                                 f"'format: {FORMAT}' entry); export it with `csrinfer export`")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelFileError(f"{source} has metadata version {data['format_version']}; this csrinfer "
                                 f"reads up to {FORMAT_VERSION}, upgrade csrinfer")
        try:
            size, ids = data.get("input_size"), data.get("category_ids")
            return cls(
                class_names=tuple(str(n) for n in data["class_names"]),
                category_ids=tuple(int(i) for i in ids) if ids is not None else None,
                input_size=tuple(int(v) for v in size) if size else None,
                batch=int(data["batch"]) if data.get("batch") is not None else None,
                stride=int(data.get("stride", 8)),
                score_thr=float(data.get("score_thr", 0.1)),
                mask_thr=float(data.get("mask_thr", 0.5)),
                inference=dict(data.get("inference") or {}),
                short_side=int(data.get("short_side", 800)),
                max_size=int(data.get("max_size", 1333)),
                size_divisor=int(data.get("size_divisor", 32)),
                pad_value=tuple(float(v) for v in data.get("pad_value", PAD_VALUE_RGB)),
                precision=str(data.get("precision", "fp32")),
                name=str(data.get("config_name", "")),
                versions=dict(data.get("versions") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{source} has malformed csrinfer metadata ({type(e).__name__}: {e})") from None

    @classmethod
    def from_graph(cls, metadata: Mapping[str, str], inputs: list[tuple[str, list]], outputs: list[str],
                   source: str) -> "ModelInfo":
        """ModelInfo of an exported graph (ONNX or OpenVINO IR) from its metadata, its (input name,
        shape) pairs and its output names; the input's shape says what is static (ints) or
        dynamic (names)."""
        info = cls.from_metadata(metadata, source)
        if [name for name, _ in inputs] != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
            raise ModelFileError(f"{source} has inputs {[name for name, _ in inputs]} and outputs {outputs}; "
                                 f"expected ['{INPUT_NAME}'] and {list(OUTPUT_NAMES)}")
        b, _, h, w = inputs[0][1]
        static = lambda v: isinstance(v, int) and v > 0  # noqa: E731
        return info.replace(batch=b if static(b) else None,
                            input_size=(h, w) if static(h) and static(w) else None)

    def replace(self, **changes) -> "ModelInfo":
        return dataclasses.replace(self, **changes)


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """Names for a model given without any: "0", "1", ... (what ``Instances.names`` prints)."""
    return tuple(str(i) for i in range(num_classes))


def producing_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of csrinfer, torch and onnx (plus ``extra`` modules when importable)."""
    import importlib

    from csrinfer import __version__

    out = {"csrinfer": __version__}
    for name in ("torch", "onnx", *extra):
        try:
            out[name] = importlib.import_module(name).__version__
        except Exception:  # an optional module: absent is fine
            continue
    return out
