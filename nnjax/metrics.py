"""Metrics by Keras name (see `nnjax.train.metrics`)."""

from nnjax.train.metrics import *  # noqa: F401,F403
from nnjax.train.metrics import __all__  # noqa: F401
