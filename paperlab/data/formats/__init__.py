"""Readers for the user's own data in the ecosystem's formats.

``image_text``: image-caption pairs from CSV/TSV (open_clip's layout) or JSON Lines;
``image_folder``: ImageFolder classification (``root/<class>/<image>``); ``text``: plain text,
one document per line, for MLM. ``common`` holds what they share: ``DataFormatError`` (its
message names file and line), ``skip_bad`` bookkeeping and image loading with Pillow.
"""
