"""Training: teaching the zoo models, and recovering pruned models' accuracy.

* :mod:`~pose_tuner.training.train` – the training loop, fine-tuning, evaluation;
* :mod:`~pose_tuner.training.data` – the synthetic keypoint dataset and its augmentation;
* :mod:`~pose_tuner.training.distill` – distillation of a pruned model from the unpruned one;
* :mod:`~pose_tuner.training.cli` – ``python -m pose_tuner.training``.
"""
