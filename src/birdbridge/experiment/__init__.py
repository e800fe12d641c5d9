"""Experiments from one file: a grid of ``birdbridge train --set`` overrides (:mod:`~birdbridge.experiment.grid`),
each run trained and evaluated (:mod:`~birdbridge.experiment.runner`), and one comparison table with confidence
intervals (:mod:`~birdbridge.experiment.table`: ``comparison.md``, ``comparison.json``)."""
