"""scikit-learn's bundled digits data set, split once and for all.

1797 grey-scale 8×8 images of handwritten digits with integer pixels 0..16 (the UCI "optical
recognition of handwritten digits" test set, shipped inside scikit-learn: nothing is downloaded).

The split is stratified by class with ``test_size = 0.25`` and ``random_state = 0``: 1347 training
and 450 test images. It depends only on scikit-learn's ``train_test_split``, whose stratified
shuffling has been stable across releases.

Two views of the same images:

* the **integer network** sees the raw pixels, ``int64`` in ``[0, 16]`` — analog encoding with
  ``input_bounds = (0, 16)`` (:data:`INPUT_BOUNDS`);
* the **float model** sees ``pixels · (1/16)`` in ``[0, 1]`` (:data:`INPUT_SCALE`,
  :func:`to_float`). The factor is a power of two, so the float input is exact and the
  conversion folds it into the first layer's weights (spec §2.4, "the first layer").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "INPUT_BOUNDS",
    "INPUT_SCALE",
    "N_CLASSES",
    "N_PIXELS",
    "PIXEL_MAX",
    "RANDOM_STATE",
    "TEST_SIZE",
    "Digits",
    "load",
    "to_float",
]

#: Largest pixel value of the data set.
PIXEL_MAX = 16
#: Range of an integer pixel, the integer network's ``input_bounds``.
INPUT_BOUNDS = (0, PIXEL_MAX)
#: Float value of one integer pixel step: the float model sees ``pixels · INPUT_SCALE``.
INPUT_SCALE = 1.0 / PIXEL_MAX
N_PIXELS = 64
N_CLASSES = 10
#: Fraction of the images held out for testing (450 of 1797).
TEST_SIZE = 0.25
#: Seed of the stratified split.
RANDOM_STATE = 0


@dataclass(frozen=True, kw_only=True, eq=False)
class Digits:
    """A train/test split of the digits images.

    Parameters
    ----------
    x_train, x_test : numpy.ndarray
        Read-only ``int64 [n, 64]`` pixels in ``[0, 16]``, row-major 8×8.
    y_train, y_test : numpy.ndarray
        Read-only ``int64 [n]`` labels in ``[0, 9]``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _frozen(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=np.int64, copy=True)
    out.setflags(write=False)
    return out


def load(*, test_size: float = TEST_SIZE, random_state: int = RANDOM_STATE) -> Digits:
    """Load the digits and split them, stratified by class.

    Parameters
    ----------
    test_size : float
        Fraction of the images in the test set, in ``(0, 1)``.
    random_state : int
        Seed of the stratified shuffle.

    Returns
    -------
    Digits
        With the defaults: 1347 training and 450 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise TypeError(f"test_size must be a float, not {test_size!r}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must lie strictly between 0 and 1, not {test_size!r}")
    if isinstance(random_state, bool) or not isinstance(random_state, int):
        raise TypeError(f"random_state must be an integer, not {random_state!r}")
    data = load_digits()
    x = data.data
    if not np.array_equal(x, np.round(x)) or x.min() < 0 or x.max() > PIXEL_MAX:
        raise RuntimeError(f"scikit-learn's digits are no longer integers in [0, {PIXEL_MAX}]")
    x = x.astype(np.int64)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=random_state, stratify=y
    )
    return Digits(
        x_train=_frozen(x_train),
        y_train=_frozen(y_train),
        x_test=_frozen(x_test),
        y_test=_frozen(y_test),
    )


def to_float(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The float model's view of integer pixels: ``float32`` ``pixels · (1/16)`` (exact)."""
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.detach().cpu().numpy()
    arr = np.asarray(pixels)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"pixels must be an integer array, not an array of {arr.dtype}")
    return torch.from_numpy(arr.astype(np.float32) * np.float32(INPUT_SCALE))
