"""paperlab: deep-learning notes turned into readable, tested, benchmarked implementations.

Public entry points: ``paperlab.create(kind, name, **kwargs)`` builds a registered component;
``paperlab.registry`` lists them; the ``paperlab`` command runs experiments, benchmarks and the
report site.
"""

from paperlab.registry import create, export

__version__ = "0.1.0"
__all__ = ["__version__", "create", "export"]
