"""Jobs: one build-and-measure in a child process, typed both ways.

* :mod:`~pose_tuner.jobs.specs` – the job records (variant, candidate, baseline, accuracy,
  remeasure, build) and their result, serialised in one place;
* :mod:`~pose_tuner.jobs.executor` – runs a job in a child process with a timeout (a crash
  of TVM fails that job only) and retries a job whose device went away, once;
* :mod:`~pose_tuner.jobs.worker` – the child: runs the job through the compile pipeline and
  measurement, and gives every failure its kind (:mod:`pose_tuner.failures`).
"""
