"""Keras's callbacks: hooks that run between compiled steps."""

from nnjax.callbacks.base import Callback, CallbackList, History, Progbar, ProgbarLogger

__all__ = ["Callback", "CallbackList", "History", "Progbar", "ProgbarLogger"]
