"""Keras's callbacks: hooks that run between compiled steps."""

from nnjax.callbacks.backup import BackupAndRestore
from nnjax.callbacks.base import Callback, CallbackList, History, Progbar, ProgbarLogger
from nnjax.callbacks.early_stopping import EarlyStopping
from nnjax.callbacks.learning_rate import LearningRateScheduler, ReduceLROnPlateau
from nnjax.callbacks.model_checkpoint import ModelCheckpoint
from nnjax.callbacks.simple import CSVLogger, LambdaCallback, SwapEMAWeights, TerminateOnNaN
from nnjax.callbacks.tensorboard import TensorBoard

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "Progbar",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "SwapEMAWeights",
    "TensorBoard",
    "TerminateOnNaN",
]
