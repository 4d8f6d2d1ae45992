"""The GPU fast path of the PyTorch backend (issue 5): what each switch does, and the network it runs.

Five independent switches (:class:`FastPathOptions`), all off by default (plain eager FP32,
the paper's setting), given to ``Segmenter``/``TorchBackend`` as one value, ``fast=``:
``fast=True`` turns the five on, ``fast=FastPathOptions(fp16=True, ...)`` picks some:

- ``fp16``: the backbone's BatchNorms folded into the convolutions before them (in the
  weights' FP32; 53 normalisation kernels of ResNet-50 fewer), then half-precision weights and
  activations for the network; the in-graph
  post-processing (sigmoid, TopK, maskness, Matrix NMS) still runs in FP32 on the upcast
  head outputs, so mask areas and IoUs are exact sums rather than FP16 roundings.
- ``channels_last``: NHWC memory layout for weights and activations (cuDNN's tensor-core
  convolutions prefer it in FP16).
- ``fused``: the D2S blocks call the fused CUDA kernel (``torch.ops.csrinfer.d2s_fused``)
  instead of pixel_shuffle + grouped conv.
- ``cuda_graph``: network + in-graph post-processing captured as one CUDA graph per input
  shape (:class:`csrinfer.runtime.cuda_graph.CudaGraphRunner`).
- ``gpu_preprocess``: the uint8 image is uploaded and letterboxed on the GPU
  (:mod:`csrinfer.runtime.gpu_preprocess`).

Post-processing into ``Instances`` (``postprocess.to_instances``) always runs on the device
of the outputs: with a CUDA model the masks stay on the GPU until the final bool masks.
All five switches need CUDA: on a CPU device they are switched off with one warning that
names them (:meth:`FastPathOptions.for_device`), never silently.

A sixth, ``compile``, runs the network through ``torch.compile`` instead (any device; not
together with ``cuda_graph``, which would capture the compiled code a second time).

Example:
    >>> seg = Segmenter("model.pth", device="cuda", fast=True)      # the five GPU switches
    >>> seg = Segmenter("model.pth", device="cuda", fast=FastPathOptions(fp16=True, cuda_graph=True))
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from csrinfer.errors import ConfigError
from csrinfer.model.network import CSRD2SNet

CUDA_ONLY = ("fp16", "channels_last", "fused", "cuda_graph", "gpu_preprocess")


@dataclass(frozen=True)
class FastPathOptions:
    fp16: bool = False
    channels_last: bool = False
    fused: bool = False
    cuda_graph: bool = False
    gpu_preprocess: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.compile and self.cuda_graph:
            raise ConfigError("choose compile=True or cuda_graph=True, not both (torch.compile's "
                              "mode='reduce-overhead' already uses CUDA graphs)")

    @classmethod
    def all_on(cls) -> "FastPathOptions":
        """The five GPU switches on (the fast path as benchmarked); ``compile`` stays off."""
        return cls(**{name: True for name in CUDA_ONLY})

    @classmethod
    def of(cls, fast) -> "FastPathOptions":
        """What ``Segmenter(fast=...)`` takes: False or None (every switch off), True (the five GPU
        switches, :meth:`all_on`) or a ``FastPathOptions``."""
        if isinstance(fast, cls):
            return fast
        if fast is None or isinstance(fast, bool):
            return cls.all_on() if fast else cls()
        raise ConfigError(f"fast= takes True, False or a FastPathOptions, not {fast!r:.60}")

    def __bool__(self) -> bool:  # ``if fast:``: any switch on
        return bool(self.enabled)

    def as_dict(self) -> dict[str, bool]:
        return dataclasses.asdict(self)

    @property
    def enabled(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]

    @property
    def changes_model(self) -> bool:
        """True when the network itself is converted (precision, layout, D2S op, compile)."""
        return self.fp16 or self.channels_last or self.fused or self.compile

    def for_device(self, device) -> "FastPathOptions":
        """These options on ``device``: unchanged on CUDA; on a CPU the GPU switches are off, with
        one warning naming the ones that were asked for (they only speed up CUDA work)."""
        ignored = [name for name in CUDA_ONLY if getattr(self, name)]
        if torch.device(device).type == "cuda" or not ignored:
            return self
        warnings.warn(f"GPU fast-path options {', '.join(ignored)} do nothing on {device}; "
                      "running FP32 eager", stacklevel=2)
        return FastPathOptions(compile=self.compile)


class FastNet(nn.Module):
    """``CSRD2SNet.predict`` with the model-side switches applied (fp16, channels_last, fused).

    Converts ``net`` in place (like ``net.half()``): pass a copy to keep the original.
    ``forward`` takes float32 [B, 3, H, W] RGB 0-255 and returns (scores float32 [B, K],
    labels int64 [B, K], masks float32 [B, K, H/8, W/8]), as ``net.predict`` does.
    """

    def __init__(self, net: CSRD2SNet, fp16: bool = False, channels_last: bool = False, fused: bool = False):
        super().__init__()
        if fused:
            from csrinfer.plugins.torch_op import enable_fused_d2s

            enable_fused_d2s(net)
        if fp16:
            fold_batch_norms(net)
            net.half()
        if channels_last:
            net.to(memory_format=torch.channels_last)
        self.net = net.eval()
        self.dtype = torch.float16 if fp16 else torch.float32
        self.channels_last = channels_last

    def forward(self, images: torch.Tensor):
        x = images.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net.predict(x)  # post-processes in FP32 whatever the network's precision


def fold_batch_norms(net: nn.Module) -> int:
    """Fold each inference BatchNorm into the convolution it follows, in place; returns how many.

    The pairs are found as torchvision's ResNets name them: ``convN``/``bnN`` siblings and a
    convolution followed by a BatchNorm inside an ``nn.Sequential`` (the stem, downsample). It
    assumes each ``bnN`` runs right after its ``convN``, as in those ResNets (the only backbones
    here); a pre-activation block would be folded wrongly. Each folded BatchNorm becomes
    ``nn.Identity``; the folding runs in the weights' precision (FP32 from a checkpoint).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(parent: nn.Module, conv_name: str, bn_name: str) -> bool:
        conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
            return False
        setattr(parent, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        setattr(parent, bn_name, nn.Identity())
        return True

    folded = 0
    for parent in list(net.modules()):
        if isinstance(parent, nn.Sequential):
            folded += sum(fold(parent, str(i), str(i + 1)) for i in range(len(parent) - 1))
        folded += sum(fold(parent, name, "bn" + name[4:]) for name, _ in list(parent.named_children())
                      if name.startswith("conv"))
    return folded


def build_fast_net(net: CSRD2SNet, options: FastPathOptions, device):
    """``net`` on ``device`` with ``options`` applied -> a callable images -> (scores, labels, masks).

    ``options`` should already be :meth:`FastPathOptions.for_device`'d. With no switch that
    touches the network this is plain ``net.predict``. ``net`` is converted in place.
    """
    net = net.to(device).eval()
    if not (options.changes_model or options.cuda_graph):
        return net.predict
    fast = FastNet(net, options.fp16, options.channels_last, options.fused)
    if options.compile:
        return torch.compile(fast)
    if options.cuda_graph:
        from csrinfer.runtime.cuda_graph import CudaGraphRunner

        return CudaGraphRunner(fast)
    return fast
