"""Batched two-view augmentation on the training device (see
:mod:`crlc_engine.augment.batch_augment`)."""
