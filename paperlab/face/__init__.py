"""Face recognition (notes E1-E3): detection, alignment, margin-softmax losses, Partial FC,
verification.
"""

from paperlab.face.margin import (
    ArcFaceLoss,
    CombinedMarginLoss,
    CosFaceLoss,
    LSoftmaxLoss,
    NormFaceLoss,
    SoftmaxLoss,
    SphereFaceLoss,
    margin_logits,
)

__all__ = [
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "CosFaceLoss",
    "LSoftmaxLoss",
    "NormFaceLoss",
    "SoftmaxLoss",
    "SphereFaceLoss",
    "margin_logits",
]
