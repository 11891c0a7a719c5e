package org.cxredge.core;

import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

/**
 * The referral band of a format-3 bundle ({@code manifest.ensemble.abstain}, Python's
 * {@code cxr_edge.ops.quality.AbstainConfig}): a tempered prediction whose top probability is below
 * {@code min_top_prob}, or whose margin over the second label is below {@code min_margin}, carries a
 * referral ("refer to a radiologist") instead of standing on its own.
 */
public final class AbstainBand {
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("min_top_prob", "min_margin"));

    private final double minTopProb;
    private final double minMargin;

    /**
     * @throws BundleFormatException a threshold outside [0, 1]
     */
    public AbstainBand(double minTopProb, double minMargin) {
        if (!(0.0 <= minTopProb && minTopProb <= 1.0 && 0.0 <= minMargin && minMargin <= 1.0)) {
            throw new BundleFormatException("ensemble.abstain", "invalid referral band",
                    "min_top_prob and min_margin in [0, 1]", PythonFormat.repr(minTopProb) + ", "
                            + PythonFormat.repr(minMargin));
        }
        this.minTopProb = minTopProb;
        this.minMargin = minMargin;
    }

    /** Parses {@code ensemble.abstain}; absent keys take the Python defaults (0.6, 0). */
    public static AbstainBand fromJson(JsonObject o) {
        o.requireKnownKeys(KEYS, "referral band");
        return new AbstainBand(o.number("min_top_prob", 0.6), o.number("min_margin", 0.0));
    }

    /**
     * Why tempered probabilities fall in the band, in the Python runtime's words, or null when they
     * do not.
     */
    public String referral(double[] probs) {
        double[] ranked = probs.clone();
        Arrays.sort(ranked);
        double top = ranked[ranked.length - 1];
        double second = ranked.length > 1 ? ranked[ranked.length - 2] : 0.0;
        if (top < minTopProb) {
            return "top probability " + PythonFormat.fixed(top, 2) + " below " + PythonFormat.fixed(minTopProb, 2);
        }
        if (top - second < minMargin) {
            return "margin " + PythonFormat.fixed(top - second, 2) + " between the two most likely labels below "
                    + PythonFormat.fixed(minMargin, 2);
        }
        return null;
    }

    /** Refer below this top probability. */
    public double minTopProb() {
        return minTopProb;
    }

    /** Refer below this margin between the two most likely labels. */
    public double minMargin() {
        return minMargin;
    }
}
