"""Face recognition (notes E1-E3): detection, alignment, margin-softmax losses, Partial FC,
verification.
"""
