"""Data: in-memory arrays, deterministic shuffles, resumable positions."""

from nnjax.data.arrays import ArraySource, epoch_permutation, split_validation

__all__ = ["ArraySource", "epoch_permutation", "split_validation"]
