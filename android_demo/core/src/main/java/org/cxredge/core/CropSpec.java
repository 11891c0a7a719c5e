package org.cxredge.core;

import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

/**
 * Lung-mask to crop-box parameters and quality gate, stored with a bundle's segmenter. Mirrors
 * {@code cxr_edge.ops.lungcrop.CropSpec}: same fields, defaults and checks.
 */
public final class CropSpec {
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("threshold", "margin", "min_area",
            "max_area", "max_components", "min_aspect", "max_aspect", "fallback_border"));

    private final double threshold;
    private final double margin;
    private final double minArea;
    private final double maxArea;
    private final int maxComponents;
    private final double minAspect;
    private final double maxAspect;
    private final double fallbackBorder;

    /**
     * @throws BundleFormatException a value is out of range
     */
    public CropSpec(double threshold, double margin, double minArea, double maxArea, int maxComponents,
            double minAspect, double maxAspect, double fallbackBorder) {
        this.threshold = threshold;
        this.margin = margin;
        this.minArea = minArea;
        this.maxArea = maxArea;
        this.maxComponents = maxComponents;
        this.minAspect = minAspect;
        this.maxAspect = maxAspect;
        this.fallbackBorder = fallbackBorder;
        if (!(0 < threshold && threshold < 1 && 0 <= margin && margin < 0.5 && 0 <= fallbackBorder
                && fallbackBorder < 0.4)) {
            throw new BundleFormatException("segmenter.crop", "invalid crop spec",
                    "0<threshold<1, 0<=margin<0.5, 0<=fallback_border<0.4", toString());
        }
        if (!(0 <= minArea && minArea < maxArea && maxArea <= 1 && 0 < minAspect && minAspect < maxAspect)) {
            throw new BundleFormatException("segmenter.crop", "invalid crop gate",
                    "min_area < max_area, min_aspect < max_aspect", toString());
        }
    }

    /** The Python defaults. */
    public static CropSpec defaults() {
        return new CropSpec(0.5, 0.05, 0.08, 0.8, 4, 0.6, 2.2, 0.08);
    }

    /** Parses a segmenter's {@code crop} object; absent keys take the defaults. */
    public static CropSpec fromJson(JsonObject o) {
        o.requireKnownKeys(KEYS, "crop spec");
        CropSpec d = defaults();
        return new CropSpec(o.number("threshold", d.threshold), o.number("margin", d.margin),
                o.number("min_area", d.minArea), o.number("max_area", d.maxArea),
                o.integer("max_components", d.maxComponents), o.number("min_aspect", d.minAspect),
                o.number("max_aspect", d.maxAspect), o.number("fallback_border", d.fallbackBorder));
    }

    /** Lung probability threshold. */
    public double threshold() {
        return threshold;
    }

    /** Fraction of the box's width/height added on each side. */
    public double margin() {
        return margin;
    }

    /** Smallest plausible kept-mask area (fraction of the image). */
    public double minArea() {
        return minArea;
    }

    /** Largest plausible kept-mask area. */
    public double maxArea() {
        return maxArea;
    }

    /** Most significant (at least 1% of the image) components a plausible mask has. */
    public int maxComponents() {
        return maxComponents;
    }

    /** Smallest plausible box width/height. */
    public double minAspect() {
        return minAspect;
    }

    /** Largest plausible box width/height. */
    public double maxAspect() {
        return maxAspect;
    }

    /** Border removed on each side by the fallback crop. */
    public double fallbackBorder() {
        return fallbackBorder;
    }

    @Override
    public String toString() {
        return "CropSpec(threshold=" + threshold + ", margin=" + margin + ", min_area=" + minArea + ", max_area="
                + maxArea + ", max_components=" + maxComponents + ", min_aspect=" + minAspect + ", max_aspect="
                + maxAspect + ", fallback_border=" + fallbackBorder + ")";
    }
}
