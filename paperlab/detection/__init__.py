"""Detection (notes F1-F4): boxes and NMS (``boxes.py``), RoI pooling and align (``roi.py``),
deformable convolution (``deform_conv.py``), mAP (``map.py``, ``coco.py``).
"""
