"""Ratio benchmarks of asyncify-kit against its peers: ``python -m benchmarks``.

See ``benchmarks/README.md`` for how to add a section.
"""
