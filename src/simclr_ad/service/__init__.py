"""The HTTP inspection service: a FastAPI app around a Predictor (nothing loaded at import).

It needs the ``serve`` extra; importing the package without it is a one-line UserError that
says what to install, before FastAPI's ImportError could surface as a traceback.
"""

from simclr_ad.errors import require_extra

require_extra("serve", needed_by="simclr-ad serve")
