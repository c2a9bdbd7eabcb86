"""Training recipes: a named config plus a data set, built into a ``training.trainer.Task``.

Each recipe is registered with ``@export_recipe(name, config=ConfigClass)`` and trained by
``paperlab train NAME`` (or ``torchrun --nproc_per_node=N -m paperlab train NAME``).
"""
