"""An offline demo on a synthetic world: generated species, their calls and their pictures.

:mod:`~birdbridge.demo.names` builds a taxonomy with made-up Latin and English names,
:mod:`~birdbridge.demo.traits` gives every species acoustic and visual traits inherited down that tree,
:mod:`~birdbridge.demo.calls` and :mod:`~birdbridge.demo.pictures` turn traits into recordings and
photos, and :mod:`~birdbridge.demo.world` writes a whole world (files, manifests, traits) to disk.
"""
