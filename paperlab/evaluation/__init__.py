"""Evaluation protocols (notes H1-H2): per-frame mAP, CircularEval and the MMBench format.
"""

from paperlab.evaluation.circular import circular_eval, extract_choice
from paperlab.evaluation.frame_map import per_frame_map
from paperlab.evaluation.mmbench import (
    caption_answerer,
    itm_answerer,
    read_mmbench,
    shapes_questions,
    similarity_answerer,
    write_mmbench,
    write_shapes_benchmark,
)

__all__ = [
    "caption_answerer",
    "circular_eval",
    "extract_choice",
    "itm_answerer",
    "per_frame_map",
    "read_mmbench",
    "shapes_questions",
    "similarity_answerer",
    "write_mmbench",
    "write_shapes_benchmark",
]
