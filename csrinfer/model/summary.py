"""What ``csrinfer info`` reports: the model's parts, parameter counts and FLOPs."""

from __future__ import annotations

from csrinfer.model.complexity import count_flops, count_parameters


def model_summary(config: str | None = None, ckpt: str | None = None,
                  input_size: tuple[int, int] | None = None) -> dict:
    """Summary of a config (random weights) or a checkpoint; one of the two must be given."""
    if ckpt is not None:
        from csrinfer.model.checkpoint import load_checkpoint

        model, cfg, _ = load_checkpoint(ckpt)
    else:
        from csrinfer.config import load_config
        from csrinfer.model import build_model

        cfg = load_config(config)
        model = build_model(cfg, pretrained=False)
    h, w = input_size or tuple(cfg.input.export_size)
    return {
        "name": cfg.name,
        "backbone": cfg.model.backbone,
        "csr": cfg.model.csr,
        "csr_channels": cfg.model.csr_channels,
        "d2s": cfg.model.d2s,
        "num_classes": cfg.model.num_classes,
        "parameters": count_parameters(model),
        "flops": count_flops(model, h, w),
    }
