"""``python -m paperlab`` is the ``paperlab`` command (torchrun needs this form)."""

from paperlab.cli import main

raise SystemExit(main())
