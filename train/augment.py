"""CXR training augmentation, applied through the preprocessing hook (resized float image in [0, 1]).

Two strengths:

``mild`` (the first release's):

* small rotation (+-7 deg), scale (0.9-1.1) and shift (+-6%): patient positioning varies;
* gamma (0.7-1.4) and contrast/brightness jitter (+-10%): exposure and detector response differ
  between hospitals, one of the cues that lets a model recognise the source instead of the disease;
* occasional blur and resolution loss, and mild noise: the kit mixes 1024 px NIH PNGs with small,
  re-compressed journal figures, so sharpness itself predicts the label unless it is varied.

``acquisition`` varies what differs between *acquisitions* as much as the kit's sources differ, so
that none of it identifies a source:

* geometry: rotation +-10 deg, scale 0.85-1.2, shift +-8%, and an aspect stretch of 0.8-1.25 (two
  sources were squashed to squares upstream: Kermany 224x224, Shenzhen 512x512);
* exposure and processing: gamma 0.5-2.0, contrast 0.7-1.3, brightness +-0.15, a random intensity
  window (clipping 0-5% at either end), unsharp masking (edge enhancement of CR/DR processing);
* detector and file: resolution loss to 25-90% (Kermany's films are upscaled 224 px), Gaussian
  blur, noise, and JPEG re-compression at quality 15-90 (journal figures);
* burned-in marks: white letters or a small box at a random place (hospital markers and figure
  annotations sit on films of some sources only).

``noise`` is ``mild`` plus noise injection at random strength, one of Gaussian, Poisson (quantum
noise at a random photon count), speckle (multiplicative) and salt-and-pepper, in 80% of images:
reported to shrink the in- vs out-of-distribution gap of small COVID-19 CXR models (arXiv 2511.03855).

``decode`` is ``mild`` plus what the runtime's decoders and the cart's files do to an image, in 80%
of images: resampling down by 2-4x and back (area, as reduced decodes are resized; or bilinear),
JPEG's DCT scaling (a JPEG decoded at half size), and JPEG (quality 30-95) or JPEG 2000 (compression
5-60x) round trips, so that a decision does not hang on how a file was decoded.

No horizontal flips in any: the heart lies on the patient's left, and a flipped film is an
anatomically different (situs inversus) image; the paper does not flip either.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxr_edge.errors import SpecError
from cxr_edge.ops.preprocess import Augment

STRENGTHS = ("mild", "acquisition", "noise", "decode")


def make_augment(rng: np.random.Generator, strength: str = "mild") -> Augment:
    """Returns a function that augments one resized float image in [0, 1] using ``rng``.

    Raises:
        SpecError: ``strength`` is not one of :data:`STRENGTHS`.
    """
    if strength == "mild":
        return lambda image: _mild(image, rng)
    if strength == "acquisition":
        return lambda image: _acquisition(image, rng)
    if strength == "noise":
        return lambda image: _noise(_mild(image, rng), rng) if rng.random() < 0.8 else _mild(image, rng)
    if strength == "decode":
        return lambda image: (
            np.clip(_decode(_mild(image, rng), rng), 0.0, 1.0).astype(np.float32)
            if rng.random() < 0.8
            else _mild(image, rng)
        )
    raise SpecError("unknown augmentation strength", expected=" or ".join(STRENGTHS), received=strength)


def _mild(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape
    angle = rng.uniform(-7.0, 7.0)
    scale = rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    matrix[:, 2] += rng.uniform(-0.06, 0.06, size=2) * (w, h)
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.clip(out, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    out = (out - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.1, 0.1)
    if rng.random() < 0.3:
        out = _resolution_loss(out, rng.uniform(0.4, 0.9))
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.3:
        out = out + rng.normal(0.0, rng.uniform(0.005, 0.02), size=out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _acquisition(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape
    angle = rng.uniform(-10.0, 10.0)
    scale = rng.uniform(0.85, 1.2)
    aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25)))
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    matrix[0, :2] *= np.sqrt(aspect)  # stretch x, squeeze y: area kept
    matrix[1, :2] /= np.sqrt(aspect)
    matrix[:, 2] = (w / 2.0, h / 2.0) - matrix[:, :2] @ (w / 2.0, h / 2.0)
    matrix[:, 2] += rng.uniform(-0.08, 0.08, size=2) * (w, h)
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.clip(out, 0.0, 1.0)
    if rng.random() < 0.5:  # intensity window: clip a few percent at either end, stretch the rest
        lo, hi = np.quantile(out, [rng.uniform(0.0, 0.05), 1.0 - rng.uniform(0.0, 0.05)])
        out = np.clip((out - lo) / max(hi - lo, 1e-3), 0.0, 1.0)
    out = out ** np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    out = (out - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.15, 0.15)
    out = np.clip(out, 0.0, 1.0).astype(np.float32)
    if rng.random() < 0.5:
        out = _resolution_loss(out, rng.uniform(0.25, 0.9))
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 2.0))
    if rng.random() < 0.3:  # unsharp mask: the edge enhancement many CR/DR consoles apply
        blurred = cv2.GaussianBlur(out, (0, 0), rng.uniform(1.0, 4.0))
        out = np.clip(out + rng.uniform(0.3, 1.5) * (out - blurred), 0.0, 1.0)
    if rng.random() < 0.4:
        out = out + rng.normal(0.0, rng.uniform(0.005, 0.04), size=out.shape)
    if rng.random() < 0.3:
        out = _marks(np.clip(out, 0.0, 1.0).astype(np.float32), rng)
    if rng.random() < 0.5:
        out = _jpeg(np.clip(out, 0.0, 1.0), int(rng.integers(15, 91)))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of four noise models at a random strength."""
    kind = int(rng.integers(4))
    if kind == 0:  # Gaussian (electronic noise)
        out = image + rng.normal(0.0, rng.uniform(0.01, 0.08), size=image.shape)
    elif kind == 1:  # Poisson (quantum noise): fewer photons per pixel, more noise
        photons = np.exp(rng.uniform(np.log(20.0), np.log(1000.0)))
        out = rng.poisson(np.clip(image, 0.0, 1.0) * photons) / photons
    elif kind == 2:  # speckle (multiplicative)
        out = image * (1.0 + rng.normal(0.0, rng.uniform(0.05, 0.3), size=image.shape))
    else:  # salt and pepper (dead and hot pixels, dust)
        out = image.copy()
        hit = rng.random(image.shape) < rng.uniform(0.002, 0.03)
        out[hit] = rng.integers(0, 2, size=int(hit.sum()))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _decode(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One of the ways a decoder or a file changes an image."""
    h, w = image.shape
    kind = int(rng.integers(4))
    if kind == 0:  # reduced decode then resize: down 2-4x, back up
        factor = 1.0 / rng.uniform(2.0, 4.0)
        down = cv2.INTER_AREA if rng.random() < 0.5 else cv2.INTER_LINEAR
        small = cv2.resize(image, (max(8, int(w * factor)), max(8, int(h * factor))), interpolation=down)
        return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    u8 = np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if kind == 1:  # JPEG's DCT scaling: decoded at half size, resized back
        ok, data = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 100))])
        half = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_2) if ok else None
        return image if half is None else cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR) / 255.0
    if kind == 2:
        return _jpeg(image, int(rng.integers(30, 96)))
    ratio = rng.uniform(5.0, 60.0)  # JPEG 2000 at 1/ratio of the raw size
    ok, data = cv2.imencode(".jp2", u8, [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, int(1000 / ratio)])
    out = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if ok else None
    return image if out is None else out.astype(np.float32) / 255.0


def _resolution_loss(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape
    small = cv2.resize(
        image, (max(8, int(w * factor)), max(8, int(h * factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    u8 = np.floor(image * 255.0 + 0.5).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0 if ok else image


def _marks(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Burns a white (or black) letter pair or box in at a random place, as markers and annotations are."""
    h, w = image.shape
    mask = np.zeros((h, w), dtype=np.uint8)  # OpenCV draws text on 8-bit images only
    x, y = int(rng.uniform(0.02, 0.85) * w), int(rng.uniform(0.08, 0.95) * h)
    if rng.random() < 0.6:
        text = "".join(chr(int(c)) for c in rng.integers(65, 91, size=int(rng.integers(1, 3))))
        scale = rng.uniform(0.2, 0.6) * w / 128
        cv2.putText(mask, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(scale * 2)))
    else:
        side = int(rng.uniform(0.04, 0.12) * w)
        cv2.rectangle(mask, (x, y - side), (x + side, y), 255, max(1, w // 128))
    out = image.copy()
    out[mask > 0] = 1.0 if rng.random() < 0.8 else 0.0
    return out
