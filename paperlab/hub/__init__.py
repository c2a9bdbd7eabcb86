"""Weight import from local HF-format folders: ``load_pretrained(kind, folder)``.

``load_pretrained("bert", "path/to/folder")`` reads ``config.json`` and
``model.safetensors``, builds our model from the config and copies every tensor in,
checking names and shapes (``hub/base.py``). Nothing is downloaded: the folder is yours
(``save_pretrained`` output, or a model shipped inside a package).
"""

from paperlab.hub.pretrained import KIND_MODULES, load_pretrained

__all__ = ["KIND_MODULES", "load_pretrained"]
