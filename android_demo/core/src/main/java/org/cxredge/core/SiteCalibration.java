package org.cxredge.core;

import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The site calibration of a format-4 bundle ({@code manifest.site}, written by
 * {@code cxr-edge site calibrate}); mirrors {@code cxr_edge.ops.site}, in double precision like numpy.
 *
 * <p>It changes two steps of the prediction:
 *
 * <ol>
 *   <li><b>member heads</b> (method {@code head}): a member with a refitted head computes its
 *       probabilities from its {@code features} output instead of its own {@code probs}:
 *       {@code softmax(mean_hw(features) @ weights + bias)} ({@link Head#probs}, {@link #memberProbs});
 *   <li><b>site temperature and bias</b> (every method), after the ensemble's combiner and temperature:
 *       {@code softmax(log(clip(p, 1e-12, 1)) / T + bias)} ({@link #apply}).
 * </ol>
 *
 * <p>The label stays the argmax of the final probabilities, so the heat map and the referral follow the
 * calibrated decision. Name, date, parent, images, metrics and reference are informational. What the
 * section says about the models (heads of ensemble members, shapes over their {@code features}) is
 * checked by {@link BundleManifest}, as Python's {@code _check_site}.
 */
public final class SiteCalibration {
    /** The calibration methods ({@code SiteMethod}). */
    public static final List<String> METHODS = Collections.unmodifiableList(Arrays.asList("prior", "head"));

    private static final double EPS = 1e-12;
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("name", "date", "parent_sha256", "method",
            "images", "patients", "temperature", "bias", "heads", "operating_point", "metrics", "reference",
            "image_digests", "parent_signed_by"));
    private static final Set<String> HEAD_KEYS = new TreeSet<>(Arrays.asList("weights", "bias"));
    private static final Set<String> POINT_KEYS =
            new TreeSet<>(Arrays.asList("normal_label", "target_sensitivity", "normal_shift"));

    private final String name;
    private final String date;
    private final String parentSha256;
    private final String method;
    private final Map<String, Integer> images;
    private final int patients;
    private final double temperature;
    private final double[] bias;
    private final Map<String, Head> heads;
    private final OperatingPoint operatingPoint;
    private final Map<String, Object> metrics;
    private final Map<String, Object> reference;
    private final List<String> imageDigests;
    private final String parentSignedBy;

    /** A member's refitted classification head ({@code MemberHead}). */
    public static final class Head {
        private final double[][] weights;
        private final double[] bias;

        /**
         * @param weights {@code (K, n_classes)} dense weights over the {@code K} pooled feature channels
         * @param bias {@code (n_classes,)} dense bias
         */
        public Head(double[][] weights, double[] bias) {
            this.weights = weights;
            this.bias = bias;
        }

        static Head fromJson(JsonObject o) {
            o.requireKnownKeys(HEAD_KEYS, "site head");
            return new Head(o.numberMatrix("weights"), o.numberArray("bias"));
        }

        /** Rows of the weights: the feature channels {@code K} the head expects. */
        public int channels() {
            return weights.length;
        }

        double[][] weights() {
            return weights;
        }

        double[] bias() {
            return bias;
        }

        /**
         * Class probabilities of a {@code (h, w, K)} feature map: global average pooling (positions
         * summed in order, then divided, as numpy's mean), the dense layer, softmax.
         *
         * @param features dequantised feature map, channels last
         * @throws ModelOutputException the map does not have {@link #channels()} channels
         */
        public double[] probs(float[] features) {
            int k = weights.length;
            if (k == 0 || features.length % k != 0) {
                throw new ModelOutputException("site head does not fit the member's features",
                        k + " feature channels", features.length + " values");
            }
            int positions = features.length / k;
            double[] pooled = new double[k];
            for (int p = 0; p < positions; p++) {
                for (int c = 0; c < k; c++) {
                    pooled[c] += features[p * k + c];
                }
            }
            for (int c = 0; c < k; c++) {
                pooled[c] /= positions;
            }
            double[] z = new double[bias.length];
            for (int j = 0; j < z.length; j++) {
                double acc = 0.0;
                for (int c = 0; c < k; c++) {
                    acc += pooled[c] * weights[c][j];
                }
                z[j] = acc + bias[j];
            }
            return Ensemble.softmax(z);
        }
    }

    /** The abnormal-vs-normal operating point a site chose, already folded into the bias (informational). */
    public static final class OperatingPoint {
        private final String normalLabel;
        private final double targetSensitivity;
        private final double normalShift;

        OperatingPoint(String normalLabel, double targetSensitivity, double normalShift) {
            if (!(0.0 < targetSensitivity && targetSensitivity < 1.0)) {
                throw new BundleFormatException("site.operating_point.target_sensitivity",
                        "invalid target sensitivity", "a fraction in (0, 1)", PythonFormat.repr(targetSensitivity));
            }
            this.normalLabel = normalLabel;
            this.targetSensitivity = targetSensitivity;
            this.normalShift = normalShift;
        }

        /** The label that means "normal". */
        public String normalLabel() {
            return normalLabel;
        }

        /** Sensitivity for "abnormal" the shift was fitted to reach. */
        public double targetSensitivity() {
            return targetSensitivity;
        }

        /** What was added to the normal label's log-odds (part of {@link SiteCalibration#bias()}). */
        public double normalShift() {
            return normalShift;
        }
    }

    private SiteCalibration(JsonObject o) {
        o.requireKnownKeys(KEYS, "site calibration");
        name = o.string("name");
        date = o.string("date");
        parentSha256 = o.string("parent_sha256");
        method = o.string("method");
        JsonObject counts = o.object("images");
        Map<String, Integer> parsedImages = new LinkedHashMap<>();
        for (String label : counts.keys()) {
            parsedImages.put(label, counts.integer(label));
        }
        images = Collections.unmodifiableMap(parsedImages);
        patients = o.integer("patients");
        temperature = o.number("temperature", 1.0);
        bias = o.has("bias") ? o.numberArray("bias") : new double[0];
        Map<String, Head> parsedHeads = new LinkedHashMap<>();
        JsonObject h = o.has("heads") ? o.object("heads") : null;
        if (h != null) {
            for (String member : h.keys()) {
                parsedHeads.put(member, Head.fromJson(h.object(member)));
            }
        }
        heads = Collections.unmodifiableMap(parsedHeads);
        JsonObject point = o.optionalObject("operating_point");
        if (point != null) {
            point.requireKnownKeys(POINT_KEYS, "site operating point");
            operatingPoint = new OperatingPoint(point.string("normal_label"), point.number("target_sensitivity"),
                    point.number("normal_shift"));
        } else {
            operatingPoint = null;
        }
        metrics = ModelEntry.optionalMap(o, "metrics");
        reference = ModelEntry.optionalMap(o, "reference");
        imageDigests = Collections.unmodifiableList(
                o.has("image_digests") ? o.stringList("image_digests") : Collections.<String>emptyList());
        parentSignedBy = o.raw("parent_signed_by") == null ? null : o.string("parent_signed_by");
        // The checks of SiteCalibration.__post_init__.
        if (!METHODS.contains(method)) {
            throw new BundleFormatException("site.method", "unknown site calibration method",
                    String.join(" or ", METHODS), method);
        }
        if (!(Double.isFinite(temperature) && temperature > 0)) {
            throw new BundleFormatException("site.temperature", "invalid site temperature", "a finite T > 0",
                    PythonFormat.repr(temperature));
        }
        for (double b : bias) {
            if (!Double.isFinite(b)) {
                throw new BundleFormatException("site.bias", "invalid site bias", "finite numbers",
                        Arrays.toString(bias));
            }
        }
    }

    /** Parses {@code manifest.site}. */
    static SiteCalibration fromJson(JsonObject o) {
        return new SiteCalibration(o);
    }

    /**
     * A member's probabilities: its refitted head's when the site has one for it, else its own
     * {@code probs} ({@code SiteCalibration.member_probs}).
     *
     * @param member the member's name
     * @param probs the model's renormalised {@code probs} output
     * @param features its dequantised {@code features} output, or null when it has none
     * @throws ModelOutputException the member has a head but no features output
     */
    public double[] memberProbs(String member, double[] probs, float[] features) {
        Head head = heads.get(member);
        if (head == null) {
            return probs;
        }
        if (features == null) {
            throw new ModelOutputException("site head of " + member + " needs the member's features output",
                    "a model with a features output", "none");
        }
        return head.probs(features);
    }

    /** Site temperature and bias on combined probabilities ({@code SiteCalibration.apply}). */
    public double[] apply(double[] probs) {
        return apply(probs, temperature, bias);
    }

    /**
     * {@code softmax(log(clip(p, 1e-12, 1)) / temperature + bias)}.
     *
     * @param bias per-label bias, or empty for none
     */
    public static double[] apply(double[] probs, double temperature, double[] bias) {
        double[] z = new double[probs.length];
        for (int c = 0; c < z.length; c++) {
            z[c] = Math.log(Math.min(Math.max(probs[c], EPS), 1.0)) / temperature;
            if (bias.length > 0) {
                z[c] += bias[c];
            }
        }
        return Ensemble.softmax(z);
    }

    /** The site's name. */
    public String name() {
        return name;
    }

    /** ISO date of the calibration. */
    public String date() {
        return date;
    }

    /** SHA-256 of the manifest of the bundle it was fitted on. */
    public String parentSha256() {
        return parentSha256;
    }

    /** {@code prior} or {@code head}. */
    public String method() {
        return method;
    }

    /** Labelled images per label used for the fit. */
    public Map<String, Integer> images() {
        return images;
    }

    /** Distinct patients behind those images. */
    public int patients() {
        return patients;
    }

    /** Site temperature on the combined log-probabilities (1 = none). */
    public double temperature() {
        return temperature;
    }

    /** Per-label bias after the temperature (a copy; empty = none). */
    public double[] bias() {
        return bias.clone();
    }

    /** Refitted heads by member name (empty unless the method is {@code head}). */
    public Map<String, Head> heads() {
        return heads;
    }

    /** The operating point, or null. */
    public OperatingPoint operatingPoint() {
        return operatingPoint;
    }

    /** Cross-validated results before and after (parsed JSON). */
    public Map<String, Object> metrics() {
        return metrics;
    }

    /** What the calibrated bundle predicted on the site's images (parsed JSON). */
    public Map<String, Object> reference() {
        return reference;
    }

    /** Short SHA-256 of the labelled images' files. */
    public List<String> imageDigests() {
        return imageDigests;
    }

    /**
     * Key id of the parent bundle's signature ({@code ed25519:...}), so a calibrated bundle re-signed by the
     * site's key still names who made the model; null when the parent was unsigned (informational).
     */
    public String parentSignedBy() {
        return parentSignedBy;
    }
}
