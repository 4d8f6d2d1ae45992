"""Make tests/fixtures/mmdet_solov2: a tiny SOLOv2 built and run by mmdetection itself.

Runs in a throwaway venv with mmdetection (never in csrinfer's own environment):

    python3 -m venv /tmp/mmdet-venv
    /tmp/mmdet-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 mmengine mmcv-lite==2.2.0 \\
        mmdet==3.3.0 scikit-image
    /tmp/mmdet-venv/bin/python tools/mmdet_solov2_fixture.py tests/fixtures/mmdet_solov2

Two workarounds, both in this process only (no installed file is edited): mmdet 3.3.0 refuses
mmcv >= 2.2.0, so mmcv's version string reads 2.1.0 while mmdet is imported; and mmcv-lite has
no compiled ops, so a placeholder ``mmcv._ext`` stands in (SOLOv2 inference calls none of them;
a call would raise).

Writes:
- ``solov2_tiny.pth``: the tiny model's mmdetection checkpoint (``meta`` + ``state_dict``),
  random weights from seed 0, scaled so that instances come out;
- ``outputs.npz``: per image the BGR input, the network input mmdetection made (normalised,
  padded), its head outputs (``mlvl_kernel_preds``, ``mlvl_cls_preds``, ``mask_feats``) and
  its final instances (labels, scores, bool masks at the image size, packed as bits);
- ``r50_keys.json`` and ``light_r18_keys.json``: key -> shape of the full solov2_r50_fpn_1x_coco
  and solov2-light_r18 models (no weights);
- ``fixture.json``: versions, the command, the tiny model's mmdetection config.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np

CLASSES = ("person", "bicycle", "car", "cat", "dog")  # COCO ids 1, 2, 3, 17, 18
SIZES = ((96, 96), (80, 120), (90, 120))  # (H, W) of the small photos; the test size upscales them


def import_mmdet():
    """Import mmdet 3.3.0 on mmcv-lite 2.2.0 (the two workarounds of the module docstring)."""
    import mmcv

    class NoOps(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):  # module machinery (__file__, __spec__...) must look absent
                raise AttributeError(name)

            def missing(*args, **kwargs):
                raise RuntimeError(f"mmcv._ext.{name} is a placeholder: mmcv-lite has no compiled ops")
            return missing

    sys.modules.setdefault("mmcv._ext", NoOps("mmcv._ext"))
    real = mmcv.__version__
    mmcv.__version__ = "2.1.0"
    try:
        import mmdet
        from mmdet.utils import register_all_modules
    finally:
        mmcv.__version__ = real
    register_all_modules()
    return mmdet


def base_config(name: str):
    from mmengine.config import Config

    import mmdet

    path = Path(mmdet.__file__).parent / ".mim" / "configs" / "solov2" / name
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.init_cfg = None  # no ImageNet download
    return cfg


def tiny_config():
    cfg = base_config("solov2_r50_fpn_1x_coco.py")
    m = cfg.model
    m.backbone.update(depth=18, base_channels=8)
    m.neck.update(in_channels=[8, 16, 32, 64], out_channels=32)
    gn = dict(type="GN", num_groups=8, requires_grad=True)
    m.mask_head.update(num_classes=len(CLASSES), in_channels=32, feat_channels=64, stacked_convs=2, norm_cfg=gn)
    m.mask_head.mask_feature_head.update(feat_channels=32, out_channels=32, norm_cfg=gn)
    cfg.test_dataloader.dataset.pipeline[1].scale = (192, 128)  # Resize: long side <= 192, short side 128
    cfg.test_pipeline = cfg.test_dataloader.dataset.pipeline
    return cfg


def randomise(model, seed: int = 0) -> None:
    """Seeded random weights with activations of a useful size: He-normal convs, random norm
    affines and BatchNorm statistics, and category biases that let a few hundred cells pass 0.1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if p.dim() == 4:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith("running_mean"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name.endswith(".weight"):  # BatchNorm / GroupNorm scale
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.75)
            else:  # biases
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        model.mask_head.conv_cls.weight.mul_(0.5)
        model.mask_head.conv_cls.bias.fill_(-3.0)


def images():
    import cv2
    from skimage import data

    photos = (data.astronaut(), data.coffee(), data.chelsea())
    return [np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1])
            for rgb, (h, w) in zip(photos, SIZES)]


def key_shapes(name: str) -> dict:
    from mmdet.registry import MODELS

    model = MODELS.build(base_config(name).model)
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def main(out_dir: str) -> None:
    import mmengine
    import torch

    mmdet = import_mmdet()
    from mmdet.apis import inference_detector
    from mmdet.registry import MODELS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = tiny_config()
    model = MODELS.build(cfg.model)
    randomise(model)
    model.cfg = cfg
    model.dataset_meta = {"classes": CLASSES}
    model.eval()

    captured = {}
    model.backbone.register_forward_pre_hook(lambda mod, args: captured.update(input=args[0].clone()))
    # copies: mmdetection's predict_by_feat replaces the list's category logits by probabilities
    model.mask_head.register_forward_hook(lambda mod, args, output: captured.update(
        head=([k.clone() for k in output[0]], [c.clone() for c in output[1]], output[2].clone())))

    arrays = {}
    for i, image in enumerate(images()):
        with torch.no_grad():
            result = inference_detector(model, image)
        kernels, cls, mask_feats = captured["head"]
        inst = result.pred_instances
        masks = inst.masks.cpu().numpy().astype(bool)
        arrays.update({
            f"image{i}": image,
            f"input{i}": captured["input"].numpy(),
            f"img_shape{i}": np.array(result.metainfo["img_shape"][:2]),
            f"mask_feats{i}": mask_feats.numpy(),
            f"labels{i}": inst.labels.cpu().numpy(),
            f"scores{i}": inst.scores.cpu().numpy(),
            f"masks{i}": np.packbits(masks, axis=-1),
            f"num_cut{i}": np.array(sum(int((points_nms(c) > cfg.model.test_cfg.score_thr).sum()) for c in cls)),
        })
        for lvl, (k, c) in enumerate(zip(kernels, cls)):
            arrays[f"kernel{i}_{lvl}"], arrays[f"cls{i}_{lvl}"] = k.numpy(), c.numpy()
        print(f"image {i}: {image.shape[:2]} -> input {tuple(captured['input'].shape[-2:])}, "
              f"{int(arrays[f'num_cut{i}'])} (cell, class) pairs above the score cut, {len(masks)} instances")
    np.savez_compressed(out / "outputs.npz", **arrays)

    checkpoint = {"meta": {"mmdet_version": mmdet.__version__, "dataset_meta": {"classes": CLASSES}},
                  "state_dict": model.state_dict()}
    torch.save(checkpoint, out / "solov2_tiny.pth")
    (out / "r50_keys.json").write_text(json.dumps(key_shapes("solov2_r50_fpn_1x_coco.py")))
    (out / "light_r18_keys.json").write_text(json.dumps(key_shapes("solov2-light_r18_fpn_ms-3x_coco.py")))

    import mmcv
    import skimage

    info = {
        "made_by": "tools/mmdet_solov2_fixture.py",
        "command": f"/tmp/mmdet-venv/bin/python tools/mmdet_solov2_fixture.py {out_dir}",
        "versions": {"mmdet": mmdet.__version__, "mmcv-lite": mmcv.__version__, "mmengine": mmengine.__version__,
                     "torch": torch.__version__, "scikit-image": skimage.__version__, "numpy": np.__version__},
        "workarounds": ["mmcv.__version__ read as 2.1.0 while mmdet is imported (mmdet 3.3.0 refuses mmcv 2.2.0)",
                        "placeholder mmcv._ext module (mmcv-lite ships no compiled ops; SOLOv2 inference uses none)"],
        "classes": list(CLASSES),
        "images": "skimage.data astronaut, coffee, chelsea, resized (INTER_AREA) to " + str(list(SIZES)),
        "model": cfg.model.to_dict() if hasattr(cfg.model, "to_dict") else dict(cfg.model),
        "test_resize_scale": [192, 128],
    }
    (out / "fixture.json").write_text(json.dumps(info, indent=1, default=str))


def points_nms(logits):
    import torch.nn.functional as F

    p = logits.sigmoid()
    return p * (F.max_pool2d(p, 2, stride=1, padding=1)[:, :, :-1, :-1] == p)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/mmdet_solov2")
