"""The only place that touches aiortc, aioice and pylibsrtp internals, one module per concern.

aiortc's public API decodes what it receives and encodes what it sends; an SFU must do neither,
so these modules replace the few private methods in between, listed in each module and checked
against the pinned versions by tests/media/test_aiortc_contract.py. Import from the module
that does the job; this package re-exports nothing.
"""

from . import versions  # noqa: F401  (warns once, at import, if other versions are installed)
