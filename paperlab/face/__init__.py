"""Face recognition (notes E1-E3): detection, alignment, margin-softmax losses, Partial FC,
verification.
"""

from paperlab.face.align import ARCFACE_TEMPLATE, align_face, similarity_transform
from paperlab.face.backbone import FaceBackbone
from paperlab.face.detect import Face, detect_faces
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
from paperlab.face.mtcnn import MTCNN
from paperlab.face.partial_fc import PartialFC
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
    "Face",
    "FaceBackbone",
    "MTCNN",
    "PartialFC",
    "detect_faces",
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
