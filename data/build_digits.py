"""Build an HDF5 file of scikit-learn's bundled handwritten digits (``load_digits``).

Source: ``sklearn/datasets/data/digits.csv.gz`` inside scikit-learn (the UCI "Optical
Recognition of Handwritten Digits" test set: 1,797 images of 8 x 8 pixels, grey levels 0-16).
Nothing is downloaded by this script.

Output: ``data`` (float64, grey level / 16, in [0, 1]; 1,797 x 64, one flattened image a row,
``image_shape`` attribute), ``target`` (the digit of every row).

    python data/build_digits.py digits.h5
"""

import argparse
import os

import h5py
import numpy as np
from sklearn.datasets import load_digits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="HDF5 file to write")
    args = parser.parse_args(argv)
    digits = load_digits()
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        data = f.create_dataset("data", data=digits.data.astype(np.float64) / 16.0)
        data.attrs["image_shape"] = np.array([8, 8])
        f.create_dataset("target", data=digits.target.astype(np.int64))
        f.attrs.update(source="sklearn.datasets.load_digits", built_by="data/build_digits.py")
    os.replace(tmp, args.out)
    print(f"{args.out}: {digits.data.shape[0]} images x {digits.data.shape[1]} pixels")


if __name__ == "__main__":
    main()
