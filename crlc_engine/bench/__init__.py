"""``crlc bench``: how fast training runs on one device, next to what it could be.

In one run on one device it measures, in samples (images, two augmented views each) per
second:

1. the model-only ceiling (:mod:`.ceiling`): forward, CRLC losses, backward and SGD step on
   views already on the device, eager and compiled;
2. our trainer's step (:mod:`.trainer_step`): :class:`~crlc_engine.training.trainer.CRLCTrainer`
   on a uint8 image tensor, augmentation on the device included;
3. an official-code-style pipeline (:mod:`.reference`): JPEG files read with PIL and torchvision
   transforms in DataLoader workers, feeding a float32 eager model with the same step.

:func:`crlc_engine.bench.run.run_bench` runs them and returns a
:class:`~crlc_engine.bench.report.BenchReport`. The settings (:mod:`.settings`) are torch-free;
this package imports nothing at import time, so the settings stay importable without torch.
"""
