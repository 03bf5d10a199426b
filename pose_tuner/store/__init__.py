"""The store: the Pareto database and what is read from it.

* :mod:`~pose_tuner.store.records` – the frozen record of one measured point;
* :mod:`~pose_tuner.store.db` – the SQL database (SQLite or PostgreSQL), its versioned
  schema and migrations, and the nightly tables;
* :mod:`~pose_tuner.store.pareto`, :mod:`~pose_tuner.store.compare` – the front and the
  comparison with the baselines; :mod:`~pose_tuner.store.report`,
  :mod:`~pose_tuner.store.plot` – tables and plots of records.

It imports no other layer: the compile pipeline and measurement know nothing of it.
"""
