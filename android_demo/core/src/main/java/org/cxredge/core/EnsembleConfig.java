package org.cxredge.core;

import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * How member models' probabilities are combined ({@code manifest.ensemble}); mirrors
 * {@code cxr_edge.bundle.manifest.EnsembleConfig}. The maths lives in {@link Ensemble}.
 */
public final class EnsembleConfig {
    /** The combiners, in the Python order. */
    public static final List<String> METHODS =
            Collections.unmodifiableList(Arrays.asList("vote", "mean", "weighted", "stacking"));

    private static final Set<String> KEYS =
            new TreeSet<>(Arrays.asList("method", "members", "weights", "stacking", "temperature", "abstain"));

    private final String method;
    private final List<String> members;
    private final double[] weights;
    private final Stacker stacking;
    private final double temperature;
    private final AbstainBand abstain;

    /**
     * Builds and checks a configuration (the Python {@code __post_init__} checks).
     *
     * @param method {@code vote}, {@code mean}, {@code weighted} or {@code stacking}
     * @param members names of the models that run, in the order weights/stacking expect
     * @param weights one weight per member for {@code weighted}, else may be null
     * @param stacking the meta-learner for {@code stacking}, else may be null
     * @param temperature applied to the combined probabilities (1 = none)
     * @throws BundleFormatException inconsistent values
     */
    public EnsembleConfig(String method, List<String> members, double[] weights, Stacker stacking, double temperature) {
        this(method, members, weights, stacking, temperature, null);
    }

    /**
     * As {@link #EnsembleConfig(String, List, double[], Stacker, double)}, with an referral band.
     *
     * @param abstain applied to the tempered probabilities, or null
     */
    public EnsembleConfig(String method, List<String> members, double[] weights, Stacker stacking, double temperature,
            AbstainBand abstain) {
        this.abstain = abstain;
        this.method = method;
        this.members = Collections.unmodifiableList(members);
        this.weights = weights == null ? null : weights.clone();
        this.stacking = stacking;
        this.temperature = temperature;
        if (!METHODS.contains(method)) {
            throw new BundleFormatException("ensemble.method", "unknown ensemble method",
                    String.join(" or ", METHODS), method);
        }
        if ("weighted".equals(method) && (weights == null || weights.length != members.size())) {
            throw new BundleFormatException("ensemble.weights", "weighted ensemble needs one weight per member",
                    members.size() + " weights", weights == null ? "None" : Arrays.toString(weights));
        }
        if ("stacking".equals(method) && stacking == null) {
            throw new BundleFormatException("ensemble.stacking", "stacking ensemble needs its meta-learner",
                    "a stacking object", "none");
        }
        if (!(temperature > 0)) {
            throw new BundleFormatException("ensemble.temperature", "invalid temperature", "a positive number",
                    String.valueOf(temperature));
        }
    }

    /** Parses {@code manifest.ensemble}; absent keys take the Python defaults (mean, no members). */
    public static EnsembleConfig fromJson(JsonObject o) {
        o.requireKnownKeys(KEYS, "ensemble config");
        List<String> members = o.has("members") ? o.stringList("members") : Collections.<String>emptyList();
        double[] weights = o.raw("weights") == null ? null : o.numberArray("weights");
        Stacker stacking = o.raw("stacking") == null ? null : Stacker.fromJson(o.object("stacking"));
        AbstainBand abstain = o.raw("abstain") == null ? null : AbstainBand.fromJson(o.object("abstain"));
        return new EnsembleConfig(o.string("method", "mean"), members, weights, stacking, o.number("temperature", 1.0),
                abstain);
    }

    /** The same members averaged (what a runtime uses for a chosen subset of members). */
    public static EnsembleConfig meanOf(List<String> members) {
        return meanOf(members, null);
    }

    /**
     * The same members averaged, keeping an referral band (referring too often is safer than never).
     */
    public static EnsembleConfig meanOf(List<String> members, AbstainBand abstain) {
        return new EnsembleConfig("mean", members, null, null, 1.0, abstain);
    }

    /** The combiner. */
    public String method() {
        return method;
    }

    /** Member names, in order. */
    public List<String> members() {
        return members;
    }

    /** Weights for {@code weighted} (a copy), or null. */
    public double[] weights() {
        return weights == null ? null : weights.clone();
    }

    /** The meta-learner for {@code stacking}, or null. */
    public Stacker stacking() {
        return stacking;
    }

    /** Temperature (1 = none). */
    public double temperature() {
        return temperature;
    }

    /** The referral band, or null (format 1-2 bundles, or none set). */
    public AbstainBand abstain() {
        return abstain;
    }

    /** Why tempered probabilities fall in the referral band, or null (no band, or outside it). */
    public String referral(double[] probs) {
        return abstain == null ? null : abstain.referral(probs);
    }
}
