"""SOLOv2 with an FPN (mmdetection's ``SOLOv2``): ResNet C2-C5 -> FPN P2-P6 -> per-level head.

The paper's Table II baseline, reproduced layer for layer so that mmdetection's trained
checkpoints run through csrinfer's export, runtimes and serving (``csrinfer convert --from
mmdet``, docs/mmdet.md). It is a :class:`~csrinfer.model.network.CSRD2SNet` to every caller
(normalisation inside, ``forward`` -> head outputs, ``predict`` -> fixed-size final instances);
what differs is what the parts are and that its masks come at stride 4.

Post-processing follows mmdetection's ``SOLOV2Head._predict_by_feat_single``: local maximum on
the category *probabilities*, score cut, masks by the dynamic kernels on the stride-4 features,
a mask no larger than its level's stride dropped, maskness rescoring, ``nms_pre`` best rescored
candidates into Matrix NMS, decayed scores under ``filter_thr`` dropped, ``max_per_img`` kept.
One step cannot be written as the reference does in a fixed-size graph: the reference computes
the mask of every cell above the score cut, an unbounded count; the graph computes the
``nms_pre`` best cells by category score. The two agree whenever at most ``nms_pre`` (cell,
class) pairs pass the score cut. Upsampling the masks x4 to the input, cropping the padding
and resizing to the image happen in the runtime (:func:`csrinfer.runtime.postprocess.paste_masks`),
exactly as the reference orders them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from csrinfer.model.network import CSRD2SNet
from csrinfer.model.postprocess import postprocess


def points_nms_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """mmdetection's local-maximum filter: sigmoid first, then keep a cell whose probability
    equals the maximum of its 2x2 upper-left window (cells that tie in probability all stay)."""
    probs = logits.sigmoid()
    lmax = F.max_pool2d(probs, kernel_size=2, stride=1, padding=1)[:, :, :-1, :-1]
    return probs * (lmax == probs).to(probs.dtype)


class SOLOv2(CSRD2SNet):
    """SOLOv2: backbone returning (C2..C5), an FPN returning (P2..P6), a ``SOLOv2FPNHead``.

    Args are those of :class:`CSRD2SNet`; ``min_mask_areas`` are input areas, 16 x the
    reference's ``strides`` (8, 8, 16, 32, 32), which it compares with mask pixels counted at stride 4.
    """

    stride = 4  # of the mask features and of the output masks

    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images float [B, 3, H, W] RGB 0-255 -> (scores [B,K], labels [B,K], masks [B,K,H/4,W/4])."""
        out = self(images)
        return postprocess([p.float() for p in out.cate_preds], [k.float() for k in out.kernel_preds],
                           out.mask_feats.float(), self.min_mask_areas, mask_stride=self.stride,
                           cell_scores=points_nms_probabilities,
                           **self.inference)
