"""Experiments for the vision-language models (notes D5-D7): CLIP, SigLIP, BLIP."""
