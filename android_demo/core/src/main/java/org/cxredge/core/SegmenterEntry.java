package org.cxredge.core;

import java.util.Arrays;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The lung segmenter stage of a bundle ({@code manifest.segmenter}): its model file, its own
 * preprocessing, the crop rule and its role. Mirrors {@code cxr_edge.bundle.manifest.SegmenterEntry}.
 *
 * <p>The role ({@code SegmenterRole} in Python) says what the segmenter does to the classifiers' input:
 * {@link #ROLE_CROP} (the default when absent; the paper's system: the classifiers see the lung crop) or
 * {@link #ROLE_EVIDENCE} (the classifiers were trained on the full image; the lung mask only checks where
 * the heat map's evidence lies). Any other value is refused.
 */
public final class SegmenterEntry implements ModelFile {
    /** The classifiers see the lung crop (the paper's system; the default). */
    public static final String ROLE_CROP = "crop";
    /** The classifiers see the full image; the lung mask only checks the heat map's evidence. */
    public static final String ROLE_EVIDENCE = "evidence";

    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("name", "file", "sha256", "quant", "input",
            "outputs", "params", "macs", "preprocess", "crop", "metrics", "role"));

    private final String name;
    private final String file;
    private final String sha256;
    private final String quant;
    private final TensorSpec input;
    private final Map<String, TensorSpec> outputs;
    private final long params;
    private final long macs;
    private final PreprocessSpec preprocess;
    private final CropSpec crop;
    private final Map<String, Object> metrics;
    private final String role;

    private SegmenterEntry(JsonObject o) {
        o.requireKnownKeys(KEYS, "segmenter entry");
        name = o.string("name");
        file = ModelEntry.plainFileName(o.string("file"), o.child("file"));
        sha256 = o.string("sha256");
        quant = o.string("quant");
        input = TensorSpec.fromJson(o.object("input"));
        outputs = ModelEntry.parseOutputs(o.object("outputs"));
        params = o.longValue("params");
        macs = o.longValue("macs");
        preprocess = PreprocessSpec.fromJson(o.object("preprocess"));
        crop = o.has("crop") ? CropSpec.fromJson(o.object("crop")) : CropSpec.defaults();
        metrics = ModelEntry.optionalMap(o, "metrics");
        role = o.string("role", ROLE_CROP);
        if (!ROLE_CROP.equals(role) && !ROLE_EVIDENCE.equals(role)) {
            throw new BundleFormatException(o.child("role"), "unknown segmenter role",
                    "one of ['" + ROLE_CROP + "', '" + ROLE_EVIDENCE + "']", "\"" + role + "\"");
        }
    }

    /** Parses {@code manifest.segmenter}. */
    public static SegmenterEntry fromJson(JsonObject o) {
        return new SegmenterEntry(o);
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public String file() {
        return file;
    }

    @Override
    public String sha256() {
        return sha256;
    }

    /** Variant ({@code fp32}, {@code int8}...). */
    public String quant() {
        return quant;
    }

    @Override
    public TensorSpec input() {
        return input;
    }

    @Override
    public Map<String, TensorSpec> outputs() {
        return outputs;
    }

    /** Parameter count. */
    public long params() {
        return params;
    }

    /** Multiply-accumulates per image. */
    public long macs() {
        return macs;
    }

    /** How the image is prepared for the segmenter. */
    public PreprocessSpec preprocess() {
        return preprocess;
    }

    /** Mask to box rule and quality gate. */
    public CropSpec crop() {
        return crop;
    }

    /** Dice/IoU of this variant (parsed JSON). */
    public Map<String, Object> metrics() {
        return metrics;
    }

    /** {@link #ROLE_CROP} or {@link #ROLE_EVIDENCE}. */
    public String role() {
        return role;
    }

    /**
     * Whether the classifiers see the lung crop ({@code SegmenterEntry.crops}); false for a segmenter of
     * role {@link #ROLE_EVIDENCE}, whose classifiers see the full image (the border crop of a bundle without
     * a segmenter).
     */
    public boolean crops() {
        return ROLE_CROP.equals(role);
    }
}
