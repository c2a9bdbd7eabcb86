"""Video understanding (note H1): online action detection (OadTR) and its feature streams.
"""

from paperlab.video.oadtr import (
    LSTMDetector,
    OadTR,
    OadTRConfig,
    OadTRStream,
    TRNDetector,
    oadtr_loss,
    sliding_windows,
)
from paperlab.video.streams import Stream, make_streams, read_video

__all__ = [
    "LSTMDetector",
    "OadTR",
    "OadTRConfig",
    "OadTRStream",
    "Stream",
    "TRNDetector",
    "make_streams",
    "oadtr_loss",
    "read_video",
    "sliding_windows",
]
