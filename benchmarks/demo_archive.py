"""The demo's archive: soundscapes of the demo world searched by name and by picture, five hits per species labelled,
probes trained with and without the text prior, and 1, 4 and 16 labels per species; prints AP against the truth.

Needs the output of ``birdbridge demo``; see :mod:`birdbridge.demo.archive`.

    python benchmarks/demo_archive.py --demo demo_out --out /tmp/archive-demo
"""

from birdbridge.demo.archive import main

if __name__ == "__main__":
    main()
