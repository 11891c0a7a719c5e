package org.cxredge.core;

import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * One classifier of the bundle ({@code manifest.models[i]}); mirrors
 * {@code cxr_edge.bundle.manifest.ModelEntry}. Metadata the runtime does not use (parity, metrics, gate)
 * is kept as parsed JSON maps.
 */
public final class ModelEntry implements ModelFile {
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("name", "file", "sha256", "architecture",
            "quant", "input", "outputs", "params", "parity", "metrics", "params_unpruned", "macs", "pruned_fraction",
            "cam_weights", "gate"));

    private final String name;
    private final String file;
    private final String sha256;
    private final String architecture;
    private final String quant;
    private final TensorSpec input;
    private final Map<String, TensorSpec> outputs;
    private final long params;
    private final Long paramsUnpruned;
    private final Long macs;
    private final double prunedFraction;
    private final double[][] camWeights;
    private final Map<String, Object> parity;
    private final Map<String, Object> metrics;
    private final Map<String, Object> gate;

    private ModelEntry(JsonObject o) {
        o.requireKnownKeys(KEYS, "model entry");
        name = o.string("name");
        file = plainFileName(o.string("file"), o.child("file"));
        sha256 = o.string("sha256");
        architecture = o.string("architecture");
        quant = o.string("quant");
        input = TensorSpec.fromJson(o.object("input"));
        outputs = parseOutputs(o.object("outputs"));
        params = o.longValue("params");
        paramsUnpruned = o.optionalLong("params_unpruned");
        macs = o.optionalLong("macs");
        prunedFraction = o.number("pruned_fraction", 0.0);
        camWeights = o.raw("cam_weights") == null ? null : o.numberMatrix("cam_weights");
        parity = optionalMap(o, "parity");
        metrics = optionalMap(o, "metrics");
        gate = optionalMap(o, "gate");
    }

    /** Parses one entry of {@code manifest.models}. */
    public static ModelEntry fromJson(JsonObject o) {
        return new ModelEntry(o);
    }

    static Map<String, TensorSpec> parseOutputs(JsonObject o) {
        Map<String, TensorSpec> out = new LinkedHashMap<>();
        for (String role : o.keys()) {
            out.put(role, TensorSpec.fromJson(o.object(role)));
        }
        return Collections.unmodifiableMap(out);
    }

    static Map<String, Object> optionalMap(JsonObject o, String key) {
        if (!o.has(key)) {
            return Collections.emptyMap();
        }
        return o.object(key).asMap();
    }

    /**
     * Refuses file names that could escape the bundle folder (the Python runtime's
     * {@code Bundle.path_of} rule): a model file is a plain name, no folders.
     */
    static String plainFileName(String file, String field) {
        if (file.isEmpty() || file.contains("/") || file.contains("\\") || file.equals(".") || file.equals("..")
                || file.indexOf('\0') >= 0) {
            throw new BundleFormatException(field, "model file outside the bundle", "a plain file name", file);
        }
        return file;
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

    /** Model family, e.g. {@code custom_cnn}. */
    public String architecture() {
        return architecture;
    }

    /** Variant: {@code fp32}, {@code fp16}, {@code dynamic_int8} or {@code int8}. */
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

    /** Parameter count of the source Keras model. */
    public long params() {
        return params;
    }

    /** Parameters before pruning, or null. */
    public Long paramsUnpruned() {
        return paramsUnpruned;
    }

    /** Multiply-accumulates per image, or null. */
    public Long macs() {
        return macs;
    }

    /** Fraction of prunable channels removed. */
    public double prunedFraction() {
        return prunedFraction;
    }

    /** {@code (K, n_classes)} dense weights for heat maps, or null when the model has none. */
    public double[][] camWeights() {
        return camWeights;
    }

    /** Whether the model exports {@code features} and the bundle stores CAM weights for it. */
    public boolean hasHeatMap() {
        return camWeights != null && outputs.containsKey("features");
    }

    /** Agreement with the Keras model (parsed JSON). */
    public Map<String, Object> parity() {
        return parity;
    }

    /** Validation/test metrics (parsed JSON). */
    public Map<String, Object> metrics() {
        return metrics;
    }

    /** The conversion's accuracy gate (parsed JSON). */
    public Map<String, Object> gate() {
        return gate;
    }

    /** The entries' names as a Python-style list, for error messages. */
    static String names(List<ModelEntry> entries) {
        StringBuilder out = new StringBuilder("[");
        for (int i = 0; i < entries.size(); i++) {
            out.append(i == 0 ? "" : ", ").append('\'').append(entries.get(i).name).append('\'');
        }
        return out.append(']').toString();
    }
}
