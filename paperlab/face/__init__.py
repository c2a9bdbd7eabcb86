"""Face recognition (notes E1-E3): detection, alignment, margin-softmax losses, Partial FC,
verification.
"""

from paperlab.face.align import ARCFACE_TEMPLATE, align_face, similarity_transform
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
from paperlab.face.verification import (
    VerificationResult,
    lfw_protocol,
    pair_distances,
    roc_auc,
    roc_curve,
    tar_at_far,
    verify_pairs,
)

__all__ = [
    "ARCFACE_TEMPLATE",
    "align_face",
    "similarity_transform",
    "ArcFaceLoss",
    "CombinedMarginLoss",
    "CosFaceLoss",
    "LSoftmaxLoss",
    "NormFaceLoss",
    "SoftmaxLoss",
    "SphereFaceLoss",
    "margin_logits",
    "VerificationResult",
    "lfw_protocol",
    "pair_distances",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verify_pairs",
]
