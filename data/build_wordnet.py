"""Build an HDF5 document-term matrix of the WordNet 3.0 glosses (Debian's ``wordnet-base``).

Source: ``/usr/share/wordnet/data.{noun,verb,adj,adv}`` of the Debian package
``wordnet-base`` (``apt-get install wordnet-base``); WordNet 3.0, Princeton University, under
the WordNet licence (see /usr/share/doc/wordnet-base/copyright). Nothing is downloaded by
this script.

Processing (deterministic): one document per synset, the text of its gloss (after ``|``: the
definition and the example sentences); lowercase, tokens ``[a-z]{2,}``, scikit-learn's
English stop words removed, terms in at least ``min_df=3`` documents and at most 50% of them
(vocabulary in alphabetical order); documents left without a term are dropped.

Output (documents as rows, terms as columns; CSR groups in the anndata/h5sparse layout that
``streamnmf.HDF5Source`` reads): ``counts`` (int32), ``tfidf`` (scikit-learn's
``TfidfTransformer`` defaults: smooth idf, rows of unit Euclidean norm), ``vocabulary``,
``synset`` (``<offset><pos>`` of every row). 117,195 x 25,146, 751,433 non-zeros.

    python data/build_wordnet.py wordnet.h5      # about 5 s
"""

import argparse
import hashlib
import os
import sys
from pathlib import Path

import h5py
import numpy as np
from sklearn.feature_extraction.text import (ENGLISH_STOP_WORDS, CountVectorizer,
                                             TfidfTransformer)

from build_news import write_csr

DEFAULT_SOURCE = "/usr/share/wordnet"
PARTS = ("noun", "verb", "adj", "adv")
TOKEN_PATTERN = r"[a-z]{2,}"


def read_glosses(folder):
    """``(synset ids, gloss texts, sha256 of the source files)`` in file order."""
    ids, texts = [], []
    digest = hashlib.sha256()
    for part in PARTS:
        path = Path(folder) / f"data.{part}"
        raw = path.read_bytes()
        digest.update(raw)
        for line in raw.decode("utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header
                continue
            offset, _, _ = line.partition(" ")
            ids.append(f"{offset}{part[0]}")
            texts.append(line.split("|", 1)[1].strip())
    return ids, texts, digest.hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="HDF5 file to write")
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help="folder holding WordNet's data.noun, data.verb, data.adj, data.adv")
    parser.add_argument("--min-df", type=int, default=3)
    args = parser.parse_args(argv)
    if not (Path(args.source) / "data.noun").exists():
        sys.exit(f"no WordNet database in {args.source}: apt-get install wordnet-base, or pass "
                 "--source")
    ids, texts, sha = read_glosses(args.source)
    vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, stop_words=sorted(ENGLISH_STOP_WORDS),
                                 min_df=args.min_df, max_df=0.5, dtype=np.int32)
    counts = vectorizer.fit_transform(texts).tocsr()
    keep = np.flatnonzero(np.diff(counts.indptr) > 0)
    counts = counts[keep]
    counts.sort_indices()
    tfidf = TfidfTransformer().fit_transform(counts).tocsr()
    tfidf.sort_indices()
    vocabulary = vectorizer.get_feature_names_out().astype(object)
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        write_csr(f.create_group("counts"), counts)
        write_csr(f.create_group("tfidf"), tfidf.astype(np.float64))
        f.create_dataset("vocabulary", data=vocabulary, dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("synset", data=np.array(ids, dtype=object)[keep],
                         dtype=h5py.string_dtype("utf-8"))
        f.attrs.update(source=os.path.abspath(args.source), source_sha256=sha,
                       token_pattern=TOKEN_PATTERN, min_df=args.min_df, max_df=0.5,
                       description="WordNet 3.0 glosses, one document per synset")
    os.replace(tmp, args.out)
    print(f"{args.out}: {counts.shape[0]} glosses x {counts.shape[1]} terms, {counts.nnz} "
          f"non-zeros")


if __name__ == "__main__":
    main()
