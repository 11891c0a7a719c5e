package org.cxredge.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The parsed {@code manifest.json} of a cxr-edge bundle: labels, preprocessing, models, ensemble,
 * optional segmenter; from format 3 also the label map, the referral band (in the ensemble), the
 * lung-evidence threshold and the model card; any format may pin a self-test file ({@link SelfTestEntry},
 * checked like a model file); format 4 is a site-calibrated bundle, whose
 * {@link SiteCalibration} the pipeline applies (a manifest has a {@code site} section exactly when it is
 * format 4, so a calibrated bundle never predicts as its parent). Mirrors
 * {@code cxr_edge.bundle.manifest.BundleManifest.from_dict} and {@code check}: the format version is
 * checked first, then every field (unknown keys refused, as the schema's
 * {@code additionalProperties: false}), then the cross-field rules. Every failure is a
 * {@link BundleFormatException} naming the field, what was expected and what was received.
 */
public final class BundleManifest {
    /** Manifest file name inside a bundle. */
    public static final String FILE_NAME = "manifest.json";
    /**
     * Format versions this runtime reads: an older one is a newer one without the newer parts (which
     * it may not use).
     */
    public static final List<Integer> READABLE_VERSIONS =
            Collections.unmodifiableList(Arrays.asList(1, 2, 3, 4));
    /** The format of a site-calibrated bundle: it has a {@code site} section, and only it has one. */
    public static final int SITE_FORMAT_VERSION = 4;

    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("format_version", "name", "labels",
            "preprocess", "models", "ensemble", "provenance", "segmenter", "label_map", "lung_evidence", "card", "decode",
            "site", "selftest"));

    private final int formatVersion;
    private final String name;
    private final List<String> labels;
    private final PreprocessSpec preprocess;
    private final List<ModelEntry> models;
    private final EnsembleConfig ensemble;
    private final Map<String, Object> provenance;
    private final SegmenterEntry segmenter;
    private final Map<String, String> labelMap;
    private final LungEvidence lungEvidence;
    private final ModelCard card;
    private final Map<String, Object> decode;
    private final SiteCalibration site;
    private final SelfTestEntry selfTest;

    private BundleManifest(JsonObject o) {
        formatVersion = o.integer("format_version");
        name = o.string("name");
        labels = Collections.unmodifiableList(o.stringList("labels"));
        preprocess = PreprocessSpec.fromJson(o.object("preprocess"));
        List<Object> items = o.array("models");
        List<ModelEntry> parsed = new ArrayList<>();
        for (int i = 0; i < items.size(); i++) {
            parsed.add(ModelEntry.fromJson(JsonObject.of(items.get(i), "models[" + i + "]")));
        }
        models = Collections.unmodifiableList(parsed);
        ensemble = EnsembleConfig.fromJson(o.object("ensemble"));
        provenance = ModelEntry.optionalMap(o, "provenance");
        segmenter = o.raw("segmenter") == null ? null : SegmenterEntry.fromJson(o.object("segmenter"));
        labelMap = ModelCard.stringMap(o, "label_map");
        lungEvidence = o.raw("lung_evidence") == null ? null : LungEvidence.fromJson(o.object("lung_evidence"));
        card = o.raw("card") == null ? null : ModelCard.fromJson(o.object("card"));
        // Reduced-resolution DICOM decoding and its gate (docs/decode.md); the app reads no DICOM, so it
        // is kept for display only.
        decode = o.raw("decode") == null ? null : ModelEntry.optionalMap(o, "decode");
        site = o.raw("site") == null ? null : SiteCalibration.fromJson(o.object("site"));
        selfTest = o.raw("selftest") == null ? null : SelfTestEntry.fromJson(o.object("selftest"));
    }

    /** The bundle's decode gate verdict ({@code manifest.decode}) as parsed JSON, or null. */
    public Map<String, Object> decode() {
        return decode;
    }

    /**
     * Parses and checks a manifest.
     *
     * @param json the text of {@code manifest.json}
     * @throws JsonSyntaxException the text is not JSON
     * @throws BundleFormatException the JSON is not a valid manifest
     */
    public static BundleManifest parse(String json) {
        return fromJson(Json.parse(json));
    }

    /**
     * Checks and converts an already parsed manifest.
     *
     * @param value the parsed JSON document
     * @throws BundleFormatException the document is not a valid manifest
     */
    public static BundleManifest fromJson(Object value) {
        if (!(value instanceof Map)) {
            throw new BundleFormatException(null, "bundle manifest is not a JSON object", "a JSON object",
                    JsonObject.describe(value));
        }
        JsonObject o = JsonObject.of(value, "");
        Object version = o.raw("format_version");
        if (!(version instanceof Long) || !READABLE_VERSIONS.contains((int) (long) (Long) version)) {
            throw new BundleFormatException("format_version", "unsupported bundle format",
                    "format_version in " + READABLE_VERSIONS.toString().replace('[', '(').replace(']', ')'),
                    "format_version " + JsonObject.describe(version));
        }
        o.requireKnownKeys(KEYS, "bundle manifest");
        BundleManifest manifest = new BundleManifest(o);
        manifest.check();
        return manifest;
    }

    /** Cross-field checks: unique labels and names, members exist, shapes agree with labels. */
    private void check() {
        checkVersionFields();
        if (segmenter != null) {
            checkSegmenter(segmenter);
            if (models.isEmpty() && labels.isEmpty() && ensemble.members().isEmpty()) {
                return; // a segmenter-only bundle
            }
        }
        if (labels.isEmpty() || new HashSet<>(labels).size() != labels.size()) {
            throw new BundleFormatException("labels", "invalid label list", "unique labels", labels.toString());
        }
        List<String> names = new ArrayList<>();
        for (ModelEntry m : models) {
            names.add(m.name());
        }
        if (new HashSet<>(names).size() != names.size()) {
            throw new BundleFormatException("models", "duplicate model names", "unique names", names.toString());
        }
        if (ensemble.members().isEmpty()) {
            throw new BundleFormatException("ensemble.members", "ensemble has no members",
                    "at least one model name", "[]");
        }
        List<String> unknown = new ArrayList<>();
        for (String member : ensemble.members()) {
            if (!names.contains(member)) {
                unknown.add(member);
            }
        }
        if (!unknown.isEmpty()) {
            throw new BundleFormatException("ensemble.members", "ensemble names unknown models",
                    "names among " + names, unknown.toString());
        }
        Stacker stacker = ensemble.stacking();
        if (stacker != null) {
            int nIn = ensemble.members().size() * labels.size();
            int nOut = labels.size();
            if (stacker.inputs() != nIn || stacker.outputs() != nOut) {
                throw new BundleFormatException("ensemble.stacking",
                        "stacking meta-learner does not fit the members and labels",
                        nIn + " inputs and " + nOut + " outputs",
                        stacker.inputs() + " inputs and " + stacker.outputs() + " outputs");
            }
        }
        int h = preprocess.height();
        int w = preprocess.width();
        for (int i = 0; i < models.size(); i++) {
            ModelEntry m = models.get(i);
            TensorSpec probs = m.outputs().get("probs");
            if (probs == null || !probs.hasShape(1, labels.size())) {
                throw new BundleFormatException("models[" + i + "].outputs",
                        "model " + m.name() + " has no probability output matching the labels",
                        "outputs.probs of shape (1, " + labels.size() + ")",
                        probs == null ? new TreeSet<>(m.outputs().keySet()).toString()
                                : Arrays.toString(probs.shape()));
            }
            TensorSpec in = m.input();
            if (in.rank() != 4 || in.dim(0) != 1 || in.dim(1) != h || in.dim(2) != w
                    || (in.dim(3) != 1 && in.dim(3) != 3)) {
                throw new BundleFormatException("models[" + i + "].input",
                        "model " + m.name() + " input does not match the preprocessing spec",
                        "(1, " + h + ", " + w + ", 1 or 3)", Arrays.toString(in.shape()));
            }
            checkHeatMap(m, i);
        }
        Map<String, String> strays = new java.util.TreeMap<>();
        for (Map.Entry<String, String> e : labelMap.entrySet()) {
            if (!labels.contains(e.getValue())) {
                strays.put(e.getKey(), e.getValue());
            }
        }
        if (!strays.isEmpty()) {
            throw new BundleFormatException("label_map", "label map names labels the bundle does not have",
                    "values among " + labels, strays.toString());
        }
        if (lungEvidence != null && segmenter == null) {
            throw new BundleFormatException("lung_evidence", "lung_evidence needs a segmenter",
                    "a bundle with a segmenter", "none");
        }
        if (card != null && !card.labels().equals(labels)) {
            throw new BundleFormatException("card.task.labels", "model card describes other labels", labels.toString(),
                    card.labels().toString());
        }
        if (site != null) {
            checkSite(site);
        }
    }

    /**
     * The site section against the bundle (Python's {@code _check_site}): a bias per label, heads only
     * for ensemble members and shaped {@code (K, n_labels)} over their model's {@code features} output,
     * an operating point on a bundle label.
     */
    private void checkSite(SiteCalibration s) {
        int n = labels.size();
        double[] bias = s.bias();
        if (bias.length != 0 && bias.length != n) {
            throw new BundleFormatException("site.bias", "site bias does not fit the labels", n + " values",
                    String.valueOf(bias.length));
        }
        for (Map.Entry<String, SiteCalibration.Head> e : s.heads().entrySet()) {
            String member = e.getKey();
            SiteCalibration.Head head = e.getValue();
            String field = "site.heads." + member;
            if (!ensemble.members().contains(member)) {
                throw new BundleFormatException(field, "site head names a model that is not an ensemble member",
                        "one of " + ensemble.members(), member);
            }
            TensorSpec features = model(member).outputs().get("features");
            Integer channels = features == null ? null : features.dim(features.rank() - 1);
            double[][] w = head.weights();
            if (channels == null || w.length != channels || head.bias().length != n) {
                throw new BundleFormatException(field, "site head of " + member + " does not fit the model",
                        "(" + channels + ", " + n + ") weights over its features output and " + n + " biases",
                        "(" + w.length + ", " + (w.length > 0 ? w[0].length : 0) + ") weights, "
                                + head.bias().length + " biases");
            }
            for (double[] row : w) {
                if (row.length != n) {
                    throw new BundleFormatException(field + ".weights", "site head of " + member
                            + " has ragged weights", n + " per row", row.length + " in a row");
                }
            }
        }
        SiteCalibration.OperatingPoint point = s.operatingPoint();
        if (point != null && !labels.contains(point.normalLabel())) {
            throw new BundleFormatException("site.operating_point.normal_label",
                    "site operating point names an unknown label", "one of " + labels, point.normalLabel());
        }
    }

    /** Parts of format 3 in an older manifest are refused (an older runtime would silently drop them). */
    private void checkVersionFields() {
        List<String> used = new ArrayList<>();
        if (!labelMap.isEmpty()) {
            used.add("label_map");
        }
        if (ensemble.abstain() != null) {
            used.add("ensemble.abstain");
        }
        if (lungEvidence != null) {
            used.add("lung_evidence");
        }
        if (card != null) {
            used.add("card");
        }
        if (decode != null) {
            used.add("decode");
        }
        if (formatVersion < 3 && !used.isEmpty()) {
            throw new BundleFormatException("format_version", "format " + formatVersion
                    + " manifest uses format-3 fields", "format_version 3", String.join(", ", used));
        }
        // Both ways: format 4 means "calibrated", so a runtime that reads only up to format 3 refuses every
        // bundle it could not apply in full, and a site section in an older format is never dropped.
        if ((site != null) != (formatVersion >= SITE_FORMAT_VERSION)) {
            throw new BundleFormatException("format_version", "site calibration and format version disagree",
                    "a site section exactly when format_version is " + SITE_FORMAT_VERSION,
                    "format_version " + formatVersion + ", " + (site != null ? "a" : "no") + " site section");
        }
    }

    /**
     * CAM weights must be {@code (K, n_classes)} with K the channels of the {@code features}
     * output (the Python runtime would fail at the first heat map; here the bundle is refused).
     */
    private void checkHeatMap(ModelEntry m, int i) {
        TensorSpec features = m.outputs().get("features");
        double[][] weights = m.camWeights();
        if (features == null || weights == null) {
            return;
        }
        int k = features.dim(features.rank() - 1);
        boolean ok = features.rank() == 4 && weights.length == k;
        for (double[] row : weights) {
            ok &= row.length == labels.size();
        }
        if (!ok) {
            throw new BundleFormatException("models[" + i + "].cam_weights",
                    "model " + m.name() + " CAM weights do not fit its features and labels",
                    "(" + k + ", " + labels.size() + ") weights for features " + Arrays.toString(features.shape()),
                    weights.length + " rows");
        }
    }

    private static void checkSegmenter(SegmenterEntry seg) {
        TensorSpec mask = seg.outputs().get("mask");
        PreprocessSpec p = seg.preprocess();
        int[] expected = {1, p.height(), p.width(), 1};
        if (mask == null || !mask.hasShape(expected)) {
            throw new BundleFormatException("segmenter.outputs",
                    "segmenter " + seg.name() + " has no mask output matching its input",
                    "outputs.mask of shape " + Arrays.toString(expected),
                    mask == null ? new TreeSet<>(seg.outputs().keySet()).toString() : Arrays.toString(mask.shape()));
        }
        int[] input = {1, p.height(), p.width(), p.channels()};
        if (!seg.input().hasShape(input)) {
            throw new BundleFormatException("segmenter.input",
                    "segmenter " + seg.name() + " input does not match its preprocessing spec",
                    Arrays.toString(input), Arrays.toString(seg.input().shape()));
        }
    }

    /** Bundle format version (1 to 4). */
    public int formatVersion() {
        return formatVersion;
    }

    /** Human-readable bundle name. */
    public String name() {
        return name;
    }

    /** Class labels in model output order. */
    public List<String> labels() {
        return labels;
    }

    /** The preprocessing spec of the classifiers. */
    public PreprocessSpec preprocess() {
        return preprocess;
    }

    /** All classifiers. */
    public List<ModelEntry> models() {
        return models;
    }

    /** Which models run by default and how they are combined. */
    public EnsembleConfig ensemble() {
        return ensemble;
    }

    /** Where the bundle came from (parsed JSON). */
    public Map<String, Object> provenance() {
        return provenance;
    }

    /** The lung segmenter stage, or null. */
    public SegmenterEntry segmenter() {
        return segmenter;
    }

    /** Manifest label to bundle label (empty: identity; format 3). */
    public Map<String, String> labelMap() {
        return labelMap;
    }

    /** The lung-evidence flag threshold, or null. */
    public LungEvidence lungEvidence() {
        return lungEvidence;
    }

    /** The model card, or null (bundles before format 3). */
    public ModelCard card() {
        return card;
    }

    /** The site calibration (format 4), or null. */
    public SiteCalibration site() {
        return site;
    }

    /** The self-test file the manifest pins, or null (older bundles). */
    public SelfTestEntry selfTest() {
        return selfTest;
    }

    /**
     * Every file the manifest pins by SHA-256: the model files ({@link #modelFiles()}), then the self-test.
     * A loader checks each ({@link LoadedBundle}, Python's {@code Bundle.load}).
     */
    public List<BundleFile> pinnedFiles() {
        List<BundleFile> out = new ArrayList<>(modelFiles());
        if (selfTest != null) {
            out.add(selfTest);
        }
        return out;
    }

    /** Every model file of the bundle (classifiers, then the segmenter). */
    public List<ModelFile> modelFiles() {
        List<ModelFile> out = new ArrayList<>(models);
        if (segmenter != null) {
            out.add(segmenter);
        }
        return out;
    }

    /**
     * The classifier called {@code name}.
     *
     * @throws BundleFormatException no such model
     */
    public ModelEntry model(String name) {
        for (ModelEntry m : models) {
            if (m.name().equals(name)) {
                return m;
            }
        }
        throw new BundleFormatException("models", "no such model in the bundle", ModelEntry.names(models), name);
    }
}
