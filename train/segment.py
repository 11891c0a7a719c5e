"""Training the lung U-Net on the kit's masks, patient-level, with held-out Dice and IoU.

Which masks are used where (the classifier's split stays the authority, so the segmenter never
trains on a patient whose images the classifiers are tested on):

* **fit / validation**: masks of patients in the split's *train* part, divided by patient (80/20,
  seeded) -- validation picks the checkpoint;
* **held-out**: masks of patients in the split's *val* and *test* parts: Dice and IoU reported.

Masks hold 0 (background), 255 (lung) and 127 ("ignore": devices over the lung); ignored pixels are
left out of the loss and of the metrics. Images and masks go through the same geometric augmentation;
images then through the single preprocessing implementation (:func:`cxr_edge.ops.preprocess.preprocess`).

**Two mask conventions** are in the kit (see :data:`CONVENTIONS`): V7 Labs' outlines (hannover,
montreal) include most of the heart/retrocardiac region, Shenzhen's outline the lung fields only.
Training uses the union as it is: the classifier only uses the crop box, and the heart lies inside the
convex hull of the two lungs, whose bounding box is the lungs' own, so the box does not depend on the
convention. The metrics say so rather than assume it: Dice/IoU and the IoU of the crop box (predicted
vs true mask, through the same :func:`cxr_edge.ops.lungcrop.lung_crop` the runtime uses) are reported
overall, per source and per convention, and for lungs-only masks the share of the between-lungs region
(heart, mediastinum) that the model calls lung, i.e. which convention it has learnt there.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import cv2
import keras
import numpy as np

from cxr_edge.dataset.manifest import Record, load_manifest
from cxr_edge.dataset.splits import read_split
from cxr_edge.errors import SpecError
from cxr_edge.imaging.reader import read_image
from cxr_edge.ops.lungcrop import CropSpec, lung_crop
from cxr_edge.ops.preprocess import preprocess, resize
from cxr_edge.provenance import git_commit, now_utc, versions
from cxr_edge.train.config import TrainConfig
from cxr_edge.train.fit import make_optimizer
from cxr_edge.train.macs import count_macs
from cxr_edge.train.rundir import (
    BEST_MODEL,
    HISTORY,
    LAST_MODEL,
    best_epoch,
    checkpoint_callbacks,
    history_state,
    prepare_run_dir,
)
from cxr_edge.train.unet import build_unet, masked_bce_dice
from cxr_edge.train.zoo import apply_weight_decay

IGNORE, LUNG = 127, 255

#: Mask convention of each source with masks. ``heart_included``: V7 Labs polygons, the heart and
#: retrocardiac region inside the lung outline (values 0/127/255); ``lungs_only``: Shenzhen's manual
#: lung fields, heart and mediastinum excluded (0/255). Other sources are reported as ``unknown``.
CONVENTIONS = {"hannover": "heart_included", "montreal": "heart_included", "shenzhen": "lungs_only"}


def convention_of(source: str) -> str:
    """The mask convention of a source (``heart_included``, ``lungs_only`` or ``unknown``)."""
    return CONVENTIONS.get(source, "unknown")


def load_pair(record: Record, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image (float, resized) and target ``(H, W, 2)``: lung 0/1 and validity 0/1, at ``size``."""
    image = resize(read_image(record.file)[0], size)
    mask = cv2.imread(str(record.mask_file), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise SpecError("unreadable mask", expected="an 8-bit PNG mask", received=str(record.mask_path))
    return image, mask_target(cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST))


def mask_target(mask: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` float target of a kit mask: lung (255) 0/1 and validity (0 where "ignore", 127).

    The same for both conventions: Shenzhen masks simply have no 127 pixels.
    """
    return np.stack([(mask == LUNG), (mask != IGNORE)], axis=-1).astype(np.float32)


def _joint_affine(image, target, rng):
    """Same small rotation/scale/shift for image and mask (mask: nearest neighbour), then exposure jitter."""
    h, w = image.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-10, 10), rng.uniform(0.9, 1.1))
    m[:, 2] += rng.uniform(-0.06, 0.06, size=2) * (w, h)
    image = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Outside the image after the warp: background that counts (valid) rather than ignored pixels.
    target = cv2.warpAffine(
        target, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 1)
    )
    image = np.clip(image, 0, 1) ** rng.uniform(0.7, 1.4)
    return np.clip(image, 0, 1).astype(np.float32), target


class MaskSequence(keras.utils.PyDataset):
    """Batches of (preprocessed image, 2-channel target), optionally augmented."""

    def __init__(self, pairs, spec, *, batch_size=4, augment=False, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.pairs, self.spec, self.batch_size, self.augment = pairs, spec, batch_size, augment
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(pairs))

    def __len__(self):
        return int(np.ceil(len(self.pairs) / self.batch_size))

    def __getitem__(self, index):
        xs, ys = [], []
        for i in self._order[index * self.batch_size : (index + 1) * self.batch_size]:
            image, target = self.pairs[i]
            if self.augment:
                image, target = _joint_affine(image, target, self._rng)
            xs.append(preprocess(image, self.spec))
            ys.append(target)
        return np.stack(xs), np.stack(ys)

    def on_epoch_end(self):
        if self.augment:
            self._rng.shuffle(self._order)


def dice_iou(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """Dice and IoU of a thresholded prediction over the valid pixels of one image."""
    valid = target[..., 1] > 0
    pred = (prob[..., 0] >= threshold) & valid
    truth = (target[..., 0] > 0) & valid
    inter, union = float((pred & truth).sum()), float((pred | truth).sum())
    total = float(pred.sum() + truth.sum())
    return (2 * inter / total if total else 1.0), (inter / union if union else 1.0)


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two ``(x0, y0, x1, y1)`` boxes (end exclusive)."""
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = float(w * h)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 1.0


def crop_box_iou(prob: np.ndarray, target: np.ndarray, crop: CropSpec) -> tuple[float, float, str]:
    """The crop box from the prediction vs from the true mask: IoU, lung kept, and the crop status.

    Both boxes come from :func:`cxr_edge.ops.lungcrop.lung_crop` at the mask's resolution (boxes scale
    linearly to source pixels, so the IoU carries over). The prediction's box is what the classifier
    would get, the fallback crop included; the true mask counts its "ignore" pixels (devices lying
    over the lung) as lung, as the kit's documentation binarises it (``mask > 0``).

    Returns:
        ``(box IoU, share of the true lung pixels inside the predicted box, lung | fallback)``; the
        second says how much lung the crop cuts away, which IoU does not tell (a too-wide box costs
        only resolution, a too-narrow one loses the opacities at the lung edge).
    """
    shape = target.shape[:2]
    predicted = lung_crop(prob[..., 0], shape, crop)
    truth = (target[..., 0] > 0) | (target[..., 1] == 0)
    x0, y0, x1, y1 = predicted.box
    kept = float(truth[y0:y1, x0:x1].sum()) / float(truth.sum()) if truth.any() else 1.0
    iou = box_iou(predicted.box, lung_crop(truth.astype(np.float32), shape, crop).box)
    return iou, kept, predicted.status


def between_lungs(target: np.ndarray) -> np.ndarray:
    """Pixels inside the convex hull of the true lung mask but not in it (heart, mediastinum for
    lungs-only masks; little else for heart-included ones)."""
    truth = (target[..., 0] > 0).astype(np.uint8)
    contours, _ = cv2.findContours(truth, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros_like(truth)
    if contours:
        cv2.fillPoly(hull, [cv2.convexHull(np.concatenate(contours))], 1)
    return (hull > 0) & (truth == 0) & (target[..., 1] > 0)


def _summary(rows: list[dict]) -> dict:
    """Means over per-image rows (``dice``, ``iou``, ``box_iou``) plus counts."""
    out = {"n": len(rows)}
    for key in ("dice", "iou", "box_iou", "lung_in_box"):
        out[key] = round(float(np.mean([r[key] for r in rows])), 4) if rows else None
    out["fallbacks"] = sum(r["status"] == "fallback" for r in rows)
    band = [r["between_lungs"] for r in rows if r["between_lungs"] is not None]
    if band:
        out["between_lungs_predicted"] = round(float(np.mean(band)), 4)
    return out


def segmentation_scores(
    probs: np.ndarray | list[np.ndarray],
    targets: list[np.ndarray],
    sources: list[str],
    crop: CropSpec | None = None,
) -> dict:
    """Held-out scores overall, per source and per mask convention.

    Args:
        probs: Predicted lung probabilities, ``(H, W, 1)`` per image.
        targets: ``(H, W, 2)`` targets of :func:`load_pair` (lung, validity).
        sources: Source of each image (its convention comes from :data:`CONVENTIONS`).
        crop: Crop rule for the box IoU (default :class:`CropSpec`, the bundle's default).

    Returns:
        ``n``, ``dice``, ``iou``, ``box_iou``, ``lung_in_box`` (see :func:`crop_box_iou`),
        ``fallbacks`` (crops of the prediction that failed the quality gate), ``dice_per_image``,
        ``by_source`` and ``by_convention`` (the same summaries); lungs-only groups add
        ``between_lungs_predicted``.
    """
    crop = crop or CropSpec()
    rows = []
    for prob, target, source in zip(probs, targets, sources, strict=True):
        prob = np.asarray(prob, dtype=np.float32).reshape((*target.shape[:2], 1))
        dice, iou = dice_iou(prob, target)
        biou, kept, status = crop_box_iou(prob, target, crop)
        band = None
        if convention_of(source) == "lungs_only":
            region = between_lungs(target)
            band = float((prob[..., 0][region] >= 0.5).mean()) if region.any() else None
        rows.append(
            {
                "source": source,
                "dice": dice,
                "iou": iou,
                "box_iou": biou,
                "lung_in_box": kept,
                "status": status,
                "between_lungs": band,
            }
        )
    scores = _summary(rows)
    scores["dice_per_image"] = [round(r["dice"], 4) for r in rows]
    for key, group in (("by_source", lambda s: s), ("by_convention", convention_of)):
        names = sorted({group(r["source"]) for r in rows})
        scores[key] = {n: _summary([r for r in rows if group(r["source"]) == n]) for n in names}
    return scores


def mask_parts(manifest_path, split_path, root=None, seed: int = 0) -> dict[str, list[Record]]:
    """Masked records: ``fit`` / ``val`` (train-part patients, 80/20) and ``heldout`` (val+test parts)."""
    manifest = load_manifest(manifest_path, root)
    split = read_split(split_path, manifest)
    masked = [r for r in manifest.records if r.mask_file is not None]
    train = [r for r in masked if split.parts[r.path] == "train"]
    patients = sorted({r.patient_id for r in train})
    random.Random(seed).shuffle(patients)
    val_patients = set(patients[: max(1, round(0.2 * len(patients)))])
    return {
        "fit": [r for r in train if r.patient_id not in val_patients],
        "val": [r for r in train if r.patient_id in val_patients],
        "heldout": [r for r in masked if split.parts[r.path] != "train"],
    }


def train_segmenter(
    config: TrainConfig,
    manifest_path,
    split_path,
    out_dir,
    *,
    root=None,
    progress=True,
    overwrite=False,
    resume=False,
    max_per_part: int | None = None,
) -> Path:
    """Trains the U-Net of ``config`` and writes a run directory (best model on validation loss).

    Returns:
        The run directory; ``run.json`` holds held-out Dice/IoU, parameters and MACs.
    """
    if config.task != "segment" or config.model != "unet":
        raise SpecError(
            "not a segmentation config",
            expected='task = "segment", model = "unet"',
            received=f"task={config.task}, model={config.model}",
        )
    out = Path(out_dir)
    started, commit = time.perf_counter(), git_commit(Path(__file__).parent)
    resuming = resume and (out / LAST_MODEL).is_file()
    prepare_run_dir(out, config, overwrite=overwrite, resume=resume)
    keras.utils.set_random_seed(config.seed)
    parts = mask_parts(manifest_path, split_path, root, config.seed)
    if max_per_part is not None:
        parts = {k: v[:max_per_part] for k, v in parts.items()}
    size = config.preprocess.input_size
    pairs = {k: [load_pair(r, size) for r in v] for k, v in parts.items()}
    fit_seq = MaskSequence(
        pairs["fit"],
        config.preprocess,
        batch_size=config.batch_size,
        augment=config.augment,
        seed=config.seed,
    )
    val_seq = MaskSequence(pairs["val"], config.preprocess, batch_size=config.batch_size)

    initial_epoch, best_so_far = 0, None
    if resuming:
        model = keras.models.load_model(out / LAST_MODEL)  # optimiser state included
        initial_epoch, best_so_far = history_state(out / HISTORY)
    else:
        model = build_unet(config.preprocess.input_shape, **config.model_args)
        model.compile(optimizer=make_optimizer(config, steps_per_epoch=len(fit_seq)), loss=masked_bce_dice)
    apply_weight_decay(model, config.weight_decay)
    if initial_epoch < config.epochs:
        model.fit(
            fit_seq,
            validation_data=val_seq,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=checkpoint_callbacks(
                out, resuming=resuming, best_so_far=best_so_far, patience=config.patience
            ),
            verbose=1 if progress else 0,
        )
    best = keras.models.load_model(out / BEST_MODEL, compile=False)
    scores = {}
    for part in ("val", "heldout"):
        x = np.stack([preprocess(image, config.preprocess) for image, _ in pairs[part]])
        probs = best.predict(x, verbose=0, batch_size=4)
        scores[part] = segmentation_scores(
            probs, [t for _, t in pairs[part]], [r.source for r in parts[part]]
        )
    run = {
        "created": now_utc(),
        "git_commit": commit,
        "versions": versions("keras", "tensorflow-cpu", "numpy", "opencv-python-headless"),
        "data_manifest": str(Path(manifest_path)),
        "split": str(Path(split_path)),
        "max_per_part": max_per_part,
        "n_images": {k: len(v) for k, v in parts.items()},
        "n_images_by_convention": {
            k: {c: sum(convention_of(r.source) == c for r in v) for c in sorted({*CONVENTIONS.values()})}
            for k, v in parts.items()
        },
        "conventions": "union as is (box does not depend on the heart; see module docstring)",
        "weights": "random initialisation",
        "params": int(best.count_params()),
        "macs": count_macs(best),
        "epochs_run": history_state(out / HISTORY)[0],
        "best_epoch": best_epoch(out / HISTORY),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "val_metrics": scores["val"],
        "heldout_metrics": scores["heldout"],
    }
    (out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    (out / LAST_MODEL).unlink(missing_ok=True)
    return out
