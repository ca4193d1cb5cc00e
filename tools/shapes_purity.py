#!/usr/bin/env python3
"""Colour purity of a quickstart concept dictionary on the shapes world (the README table).

Usage: python tools/shapes_purity.py data/world GROUND_ARTIFACT_DIR EXTRACT_ARTIFACT_DIR
(folders as printed by `xlvlm show quickstart/circle_grounding` and `quickstart/circle_train`).
For each concept: the colour the model said just before "circle" in the captions of its
most-activating samples, its share (purity), whether the image has a shape of that colour, and
whether the grounded words contain it. Needs pyarrow."""
import json, sys, glob, collections, re
import pyarrow.parquet as pq
world, ground, gens = sys.argv[1:4]
scenes = {s['filename']: s for s in json.load(open(f'{world}/scenes.json'))}
colours = ["red","green","blue","yellow","purple","orange","white","black"]
gen = {}
for f in sorted(glob.glob(f'{gens}/generations-*.parquet')):
    for r in pq.read_table(f).to_pylist():
        gen[r['sample_id']] = r['generation']
words = collections.defaultdict(list)
for r in pq.read_table(f'{ground}/words.parquet').to_pylist():
    words[r['concept']].append(r['word'])
by = collections.defaultdict(list)
for r in pq.read_table(f'{ground}/samples.parquet').to_pylist():
    by[r['concept']].append(r)
print("| concept | samples | colour said before \"circle\" (purity) | image has a shape of that colour | grounded words | colour among them |")
print("|---|---|---|---|---|---|")
for k in sorted(by):
    said = []
    for r in by[k]:
        toks = gen[r['sample_id']].split()
        i = toks.index('circle') if 'circle' in toks else -1
        c = next((t for t in reversed(toks[:i]) if t in colours), None) if i > 0 else None
        said.append((c, r['image'].split('/')[-1]))
    cnt = collections.Counter(c for c, _ in said)
    top, n = cnt.most_common(1)[0]
    in_image = sum(any(s['colour'] == top for s in scenes[fn]['shapes']) for c, fn in said if c == top)
    print(f"| {k} | {len(said)} | {top} ({n/len(said):.2f}) | {in_image}/{n} | {', '.join(words[k])} | {'yes' if top in words[k] else 'no'} |")
