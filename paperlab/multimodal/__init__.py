"""Multimodal models (notes D5-D7): CLIP, SigLIP, BLIP, their losses and zero-shot use."""
