"""Losses by Keras name (see `nnjax.train.losses`)."""

from nnjax.train.losses import *  # noqa: F401,F403
from nnjax.train.losses import __all__  # noqa: F401
