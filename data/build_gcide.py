"""Build an HDF5 document-term matrix of the GNU Collaborative International Dictionary of
English (Debian's ``dict-gcide``).

Source: ``/usr/share/dictd/gcide.{index,dict.dz}`` of the Debian package ``dict-gcide``
(``apt-get install dict-gcide``); GCIDE 0.48, derived from Webster's Revised Unabridged
Dictionary (1913) and WordNet, under the GNU General Public License (see
/usr/share/doc/dict-gcide/copyright). Nothing is downloaded by this script.

Processing (deterministic): one document per dictionary entry (the index's distinct
``(offset, length)`` pairs in index order, the ``00-database-*`` records left out), the whole
entry text; lowercase, tokens ``[a-z]{2,}``, scikit-learn's English stop words removed, terms
in at least ``min_df=3`` documents and at most 50% of them (vocabulary in alphabetical order);
documents left without a term are dropped.

Output (documents as rows, terms as columns; CSR groups in the anndata/h5sparse layout that
``streamnmf.HDF5Source`` reads): ``counts`` (int32), ``tfidf`` (scikit-learn's
``TfidfTransformer`` defaults: smooth idf, rows of unit Euclidean norm), ``vocabulary``,
``headword`` (the first index entry of every row). 126,013 x 61,190, 2,218,163 non-zeros.

    python data/build_gcide.py gcide.h5      # about 10 s
"""

import argparse
import gzip
import hashlib
import os
import sys
from pathlib import Path

import h5py
import numpy as np
from sklearn.feature_extraction.text import (ENGLISH_STOP_WORDS, CountVectorizer,
                                             TfidfTransformer)

from build_news import write_csr

DEFAULT_SOURCE = "/usr/share/dictd"
TOKEN_PATTERN = r"[a-z]{2,}"
#: the alphabet of dictd's base-64 offsets and lengths
BASE64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _number(text):
    value = 0
    for character in text:
        value = value * 64 + BASE64[character]
    return value


def read_entries(folder):
    """``(headwords, entry texts, sha256 of the dictionary file)`` in index order."""
    raw = gzip.decompress((Path(folder) / "gcide.dict.dz").read_bytes())  # dictzip is gzip
    headwords, texts, seen = [], [], set()
    with open(Path(folder) / "gcide.index", encoding="utf-8", errors="replace") as index:
        for line in index:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or fields[0].startswith("00-database"):
                continue
            span = (_number(fields[1]), _number(fields[2]))
            if span in seen:  # several headwords of one entry
                continue
            seen.add(span)
            headwords.append(fields[0])
            texts.append(raw[span[0]:span[0] + span[1]].decode("utf-8", errors="replace"))
    return headwords, texts, hashlib.sha256(raw).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="HDF5 file to write")
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help="folder holding gcide.index and gcide.dict.dz")
    parser.add_argument("--min-df", type=int, default=3)
    args = parser.parse_args(argv)
    if not (Path(args.source) / "gcide.index").exists():
        sys.exit(f"no GCIDE dictionary in {args.source}: apt-get install dict-gcide, or pass "
                 "--source")
    headwords, texts, sha = read_entries(args.source)
    vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, stop_words=sorted(ENGLISH_STOP_WORDS),
                                 min_df=args.min_df, max_df=0.5, dtype=np.int32)
    counts = vectorizer.fit_transform(texts).tocsr()
    keep = np.flatnonzero(np.diff(counts.indptr) > 0)
    counts = counts[keep]
    counts.sort_indices()
    tfidf = TfidfTransformer().fit_transform(counts).tocsr()
    tfidf.sort_indices()
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        write_csr(f.create_group("counts"), counts)
        write_csr(f.create_group("tfidf"), tfidf.astype(np.float64))
        f.create_dataset("vocabulary", data=vectorizer.get_feature_names_out().astype(object),
                         dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("headword", data=np.array(headwords, dtype=object)[keep],
                         dtype=h5py.string_dtype("utf-8"))
        f.attrs.update(source=os.path.abspath(args.source), source_sha256=sha,
                       token_pattern=TOKEN_PATTERN, min_df=args.min_df, max_df=0.5,
                       description="GCIDE 0.48 entries, one document per entry")
    os.replace(tmp, args.out)
    print(f"{args.out}: {counts.shape[0]} entries x {counts.shape[1]} terms, {counts.nnz} "
          f"non-zeros")


if __name__ == "__main__":
    main()
