package org.cxredge.core;

import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * The result of the pipeline for one image (the Python {@code Prediction}): label, combined
 * probabilities, each member's probabilities, the crop, the heat map, timings, the referral
 * band's referral, the heat map's lung fraction with its flags, and the lung mask for an outline.
 *
 * <p>With a segmenter of role {@code evidence} the classifiers saw the full image: the crop status is
 * {@code none}, its reason "" and {@link #cropBox()} null, while the lung mask still gives the lung
 * fraction, the flags and the outline when it is plausible.
 */
public final class Prediction {
    private final List<String> labels;
    private final double[] probs;
    private final Map<String, float[]> perModel;
    private final CropDecision crop;
    private final boolean cropped;
    private final ByteImage lungMask;
    private final CropBox lungRegion;
    private final PreprocessedImage preprocessed;
    private final FloatImage cam;
    private final Map<String, Double> timingsMs;
    private final String referral;
    private final Double lungFraction;
    private final List<String> flags;

    Prediction(List<String> labels, double[] probs, Map<String, float[]> perModel, CropDecision crop,
            boolean cropped, PreprocessedImage preprocessed, FloatImage cam, Map<String, Double> timingsMs,
            String referral, Double lungFraction, List<String> flags, ByteImage lungMask, CropBox lungRegion) {
        this.referral = referral;
        this.lungFraction = lungFraction;
        this.flags = Collections.unmodifiableList(flags);
        this.labels = labels;
        this.probs = probs;
        this.perModel = Collections.unmodifiableMap(perModel);
        this.crop = crop;
        this.cropped = crop != null && cropped;
        this.lungMask = lungMask;
        this.lungRegion = lungRegion;
        this.preprocessed = preprocessed;
        this.cam = cam;
        this.timingsMs = Collections.unmodifiableMap(timingsMs);
    }

    /** The predicted label (argmax of the combined probabilities, first on ties). */
    public String label() {
        return labels.get(labelIndex());
    }

    /** Index of the predicted label. */
    public int labelIndex() {
        return Ensemble.argmax(probs);
    }

    /** Class labels in output order. */
    public List<String> labels() {
        return labels;
    }

    /** Combined probability per label, in label order (a copy). */
    public double[] probs() {
        return probs.clone();
    }

    /**
     * Each member's (renormalised) probabilities, in member order; with a site-calibrated bundle, those of
     * its refitted head (computed in double, rounded to float here; the combiner used the doubles).
     */
    public Map<String, float[]> perModel() {
        return perModel;
    }

    /**
     * {@code lung}, {@code fallback} or {@code none} (no segmenter, or one of role {@code evidence}: the
     * classifiers saw the full image).
     */
    public String cropStatus() {
        return cropped ? crop.status() : "none";
    }

    /** Why the crop fell back ("" otherwise, and without a crop). */
    public String cropReason() {
        return cropped ? crop.reason() : "";
    }

    /** The lung crop box the classifiers saw, or null (no segmenter, or one of role {@code evidence}). */
    public CropBox cropBox() {
        return cropped ? crop.box() : null;
    }

    /**
     * The segmenter's crop decision (its mask's plausibility verdict and box), or null without a segmenter;
     * the classifiers saw its box only when {@link #cropBox()} is not null.
     */
    public CropDecision crop() {
        return crop;
    }

    /**
     * The segmenter's lung mask (0/255) over {@link #lungRegion()} when it is plausible (crop decision
     * {@code lung}), for drawing the lung outline; null otherwise.
     */
    public ByteImage lungMask() {
        return lungMask;
    }

    /** The source-image region the segmenter saw, when {@link #lungMask()} is not null. */
    public CropBox lungRegion() {
        return lungRegion;
    }

    /** The preprocessing result (8-bit image, model input, region). */
    public PreprocessedImage preprocessed() {
        return preprocessed;
    }

    /**
     * The class activation map of the predicted label at the feature-map resolution, averaged over
     * the members that export features; null when none does.
     */
    public FloatImage cam() {
        return cam;
    }

    /** The source-image region the classifiers saw (where {@link #cam()} belongs). */
    public CropBox camRegion() {
        return preprocessed.region();
    }

    /** The heat map in source-image pixels (zero outside the region), or null without a CAM. */
    public FloatImage heatMap(int imageWidth, int imageHeight) {
        return cam == null ? null : HeatMap.place(cam, imageWidth, imageHeight, camRegion());
    }

    /** Milliseconds per stage: segment, preprocess, one per model, combine, heatmap, lung_fraction. */
    public Map<String, Double> timingsMs() {
        return timingsMs;
    }

    /**
     * Why the prediction falls in the bundle's referral band (e.g. "top probability 0.48 below
     * 0.55"), or null.
     */
    public String referral() {
        return referral;
    }

    /**
     * Share of the heat map inside the predicted lung mask; null without a segmenter or a heat map,
     * or when the crop fell back.
     */
    public Double lungFraction() {
        return lungFraction;
    }

    /** Warnings about this prediction, e.g. {@link HeatMap#FLAG_OUTSIDE_LUNGS}. */
    public List<String> flags() {
        return flags;
    }
}
