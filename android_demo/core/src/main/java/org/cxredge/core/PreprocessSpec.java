package org.cxredge.core;

import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

/**
 * Parameters of the preprocessing steps, stored in every bundle as {@code manifest.preprocess}
 * (and per segmenter). Mirrors {@code cxr_edge.ops.preprocess.PreprocessSpec}: same fields, defaults
 * and value checks.
 */
public final class PreprocessSpec {
    /** Per-image z-score normalisation. */
    public static final String STANDARDIZE = "standardize";
    /** Values in [0, 1]. */
    public static final String UNIT = "unit";

    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList(
            "input_size", "channels", "border", "equalize", "clahe", "clahe_clip", "clahe_tiles", "median", "normalize",
            "version"));

    private final int height;
    private final int width;
    private final int channels;
    private final double border;
    private final boolean equalize;
    private final boolean clahe;
    private final double claheClip;
    private final int claheTiles;
    private final int median;
    private final String normalize;
    private final int version;

    /**
     * Builds and checks a spec (the same checks as the Python {@code __post_init__}).
     *
     * @throws BundleFormatException a value is out of range (the field is named as "preprocess")
     */
    public PreprocessSpec(int height, int width, int channels, double border, boolean clahe, double claheClip,
            int claheTiles, int median, String normalize, int version) {
        this(height, width, channels, border, false, clahe, claheClip, claheTiles, median, normalize, version,
                "preprocess");
    }

    /** As {@link #PreprocessSpec(int, int, int, double, boolean, double, int, int, String, int)}, with equalisation. */
    public PreprocessSpec(int height, int width, int channels, double border, boolean equalize, boolean clahe,
            double claheClip, int claheTiles, int median, String normalize, int version) {
        this(height, width, channels, border, equalize, clahe, claheClip, claheTiles, median, normalize, version,
                "preprocess");
    }

    private PreprocessSpec(int height, int width, int channels, double border, boolean equalize, boolean clahe,
            double claheClip, int claheTiles, int median, String normalize, int version, String field) {
        this.height = height;
        this.width = width;
        this.channels = channels;
        this.border = border;
        this.equalize = equalize;
        this.clahe = clahe;
        this.claheClip = claheClip;
        this.claheTiles = claheTiles;
        this.median = median;
        this.normalize = normalize;
        this.version = version;
        check(field);
    }

    /** The Python defaults: 256x256, 1 channel, no border, CLAHE 2.0/8, median 3, standardize. */
    public static PreprocessSpec defaults() {
        return new PreprocessSpec(256, 256, 1, 0.0, true, 2.0, 8, 3, STANDARDIZE, 1);
    }

    /** Parses a manifest's {@code preprocess} object; absent keys take the Python defaults. */
    public static PreprocessSpec fromJson(JsonObject o) {
        o.requireKnownKeys(KEYS, "preprocess spec");
        int h = 256;
        int w = 256;
        if (o.has("input_size")) {
            int[] size = o.intArray("input_size");
            if (size.length != 2) {
                throw new BundleFormatException(o.child("input_size"), "invalid value", "2 items (height, width)",
                        Arrays.toString(size));
            }
            h = size[0];
            w = size[1];
        }
        String normalize = o.string("normalize", STANDARDIZE);
        if (!STANDARDIZE.equals(normalize) && !UNIT.equals(normalize)) {
            throw new BundleFormatException(o.child("normalize"), "invalid value", "one of ['standardize', 'unit']",
                    "\"" + normalize + "\"");
        }
        return new PreprocessSpec(h, w, o.integer("channels", 1), o.number("border", 0.0), o.bool("equalize", false),
                o.bool("clahe", true), o.number("clahe_clip", 2.0), o.integer("clahe_tiles", 8), o.integer("median", 3),
                normalize, o.integer("version", 1), o.path());
    }

    private void check(String field) {
        if (!(8 <= height && height <= 4096 && 8 <= width && width <= 4096)) {
            throw new BundleFormatException(field, "invalid input_size", "8..4096 pixels per side",
                    "(" + height + ", " + width + ")");
        }
        if (channels != 1 && channels != 3) {
            throw new BundleFormatException(field, "invalid channels", "1 or 3", String.valueOf(channels));
        }
        if (!(0.0 <= border && border < 0.4)) {
            throw new BundleFormatException(field, "invalid border", "a fraction in [0, 0.4)", String.valueOf(border));
        }
        if (!(claheClip > 0) || claheTiles < 1 || claheTiles > 64) {
            throw new BundleFormatException(field, "invalid CLAHE parameters", "clip > 0 and 1..64 tiles",
                    "clip=" + claheClip + ", tiles=" + claheTiles);
        }
        if (median < 0 || (median > 1 && median % 2 == 0)) {
            throw new BundleFormatException(field, "invalid median kernel", "0, 1 or an odd size", String.valueOf(median));
        }
        if (version != 1) {
            throw new BundleFormatException(field, "unsupported preprocessing version", "1", String.valueOf(version));
        }
    }

    /** Model input height. */
    public int height() {
        return height;
    }

    /** Model input width. */
    public int width() {
        return width;
    }

    /** 1 (grey) or 3 (grey repeated). */
    public int channels() {
        return channels;
    }

    /** Fraction of width/height removed from each side when no crop box is given. */
    public double border() {
        return border;
    }

    /** Whether global histogram equalisation runs after quantisation (before CLAHE). */
    public boolean equalize() {
        return equalize;
    }

    /** Whether CLAHE runs after quantisation. */
    public boolean clahe() {
        return clahe;
    }

    /** CLAHE clip limit. */
    public double claheClip() {
        return claheClip;
    }

    /** CLAHE tiles per side. */
    public int claheTiles() {
        return claheTiles;
    }

    /** Median kernel size (0 or 1 = off). */
    public int median() {
        return median;
    }

    /** {@link #STANDARDIZE} or {@link #UNIT}. */
    public String normalize() {
        return normalize;
    }

    /** Spec format version (1). */
    public int version() {
        return version;
    }
}
