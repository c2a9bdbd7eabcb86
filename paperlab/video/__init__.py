"""Video understanding (note H1): online action detection (OadTR) and its feature streams.
"""
