"""Wrote tests/data/gallery-v1 and gallery-v1-expected.json with the gallery code of commit 49e8042.

Run once, by hand: ``PYTHONPATH=src python tests/data/make_gallery_v1.py tests/data/gallery-v1``. The folder is
kept as that code wrote it, so tests/test_vector_store.py can check that later code opens and searches it.
"""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from birdbridge.gallery import AnnSettings, Gallery, build_ann

out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
dim, n = 16, 60
rng = np.random.default_rng(2024)
centres = rng.standard_normal((3, dim)).astype(np.float32)
species = ["Pica hudsonia", "Turdus migratorius", "Corvus corax"]
labels = np.arange(n) % 3
vecs = centres[labels] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
teacher = {"ref": "tiny-clip", "name": "tiny-clip", "fingerprint": "0123456789abcdef0123456789abcdef", "embed_dim": dim}
g = Gallery.create(out, teacher, dim)
recs = []
for i in range(n):
    r = {"id": f"{species[labels[i]]}/{i}.jpg", "species": species[labels[i]],
         "path": f"pictures/{i}.jpg" if i % 2 == 0 else f"/photos/{i}.jpg",
         "split": "train" if i % 4 else "test", "source": "inat" if i < 30 else "nabirds",
         "licence": "cc-by" if i % 5 == 0 else None, "photographer": "Søren Ørsted" if i == 7 else None,
         "meta": {"i": i, "note": "café"} if i % 10 == 0 else {}}
    if i >= 55:
        r["path"] = None  # precomputed embeddings
    recs.append(r)
g.append(vecs[:40], recs[:40])
g.update_meta(build={"complete": False, "sources": ["/data/photos"], "teacher_fingerprint": teacher["fingerprint"],
                     "add": False, "started": "2025-01-01T00:00:00+00:00"})
g.append(vecs[40:], recs[40:])
sp_vecs = rng.standard_normal((4, dim)).astype(np.float32)
sp_vecs /= np.linalg.norm(sp_vecs, axis=1, keepdims=True)
PASSERINES = ["Animalia", "Chordata", "Aves", "Passeriformes"]
sp_recs = [
    {"key": "Pica hudsonia", "scientific_name": "Pica hudsonia", "common_name": "Black-billed Magpie", "code": "bbmagp",
     "taxonomy": [*PASSERINES, "Corvidae", "Pica", "hudsonia"], "has_images": True},
    {"key": "Turdus migratorius", "scientific_name": "Turdus migratorius", "common_name": "American Robin",
     "taxonomy": [*PASSERINES, "Turdidae", "Turdus", "migratorius"], "has_images": True},
    {"key": "Corvus corax", "scientific_name": "Corvus corax", "common_name": "Common Raven",
     "taxonomy": [*PASSERINES, "Corvidae", "Corvus", "corax"], "has_images": True},
    {"key": "Charadrius fulvus", "scientific_name": "Charadrius fulvus", "common_name": "Kōlea",
     "taxonomy": ["Animalia", "Chordata", "Aves", "Charadriiformes", "Charadriidae", "Charadrius", "fulvus"],
     "has_images": False},
]
g.set_species(sp_recs, sp_vecs, ["taxonomic_common"], "single", source="gallery")
build_ann(g, settings=AnnSettings(connectivity=8, expansion_add=64, expansion_search=64), progress=False)
g.update_meta(build={**g.meta["build"], "complete": True, "finished": "2025-01-01T00:01:00+00:00"})
g.close()
(out / ".lock").unlink()

# expected answers, from the same code
g = Gallery.open(out, repair=False)
queries = rng.standard_normal((5, dim)).astype(np.float32)
queries /= np.linalg.norm(queries, axis=1, keepdims=True)
exact_s, exact_r = g.search(queries, 7, exact=True)
ann_s, ann_r = g.search(queries, 7)
sub_s, sub_r = g.search(queries, 7, rows=g.rows_where(species="Corvus corax", split="train"))
sp_s, sp_i = g.search_species(queries, 3)
expected = {
    "written_by": "birdbridge at commit 49e8042 (gallery/store.py before the vector store split)",
    "queries": queries.tolist(),
    "k": 7,
    "exact": {"scores": exact_s.tolist(), "rows": exact_r.tolist()},
    "ann": {"scores": ann_s.tolist(), "rows": ann_r.tolist()},
    "corvus_train": {"rows_where": g.rows_where(species="Corvus corax", split="train").tolist(),
                     "scores": sub_s.tolist(), "rows": sub_r.tolist()},
    "species": {"scores": sp_s.tolist(), "indices": sp_i.tolist()},
    "species_counts": g.species_counts(),
    "records": [{**r.__dict__} for r in g.records(range(len(g)))],
    "ann_status": {k: v for k, v in g.ann_status().items() if k != "size_bytes"},
    "vectors_sha256": hashlib.sha256((out / "vectors.f16").read_bytes()).hexdigest(),
}
(out.parent / f"{out.name}-expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
print(g, g.ann_status(), sorted(p.name for p in out.iterdir()))
