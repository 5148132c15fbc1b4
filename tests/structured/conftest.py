"""Tests of the RBE front-end (rbe.structured).

pytest's default (prepend) import mode imports test files by their base name,
so the names here must not repeat names elsewhere under tests/; there is no
``__init__.py``, so ``rbe`` resolves to the installed package (checked in
test_structured_compat.py), never to a directory of the repository.
"""
