"""Tests of the HMM front-end (rbe.hmm). File names are unique under tests/
(pytest's prepend import mode); there is no ``__init__.py``."""
