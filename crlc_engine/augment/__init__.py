"""Batched two-view augmentation on the training device."""
