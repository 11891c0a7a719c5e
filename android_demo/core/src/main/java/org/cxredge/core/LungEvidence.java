package org.cxredge.core;

import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

/**
 * When a prediction's heat map lies too much outside the lungs ({@code manifest.lung_evidence},
 * format 3, bundles with a segmenter): lung fractions below {@code min_fraction} get the flag
 * {@link HeatMap#FLAG_OUTSIDE_LUNGS}. Mirrors {@code cxr_edge.bundle.manifest.LungEvidence}.
 */
public final class LungEvidence {
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("min_fraction", "chosen_on"));

    private final double minFraction;
    private final String chosenOn;

    LungEvidence(double minFraction, String chosenOn) {
        if (!(0.0 <= minFraction && minFraction <= 1.0)) {
            throw new BundleFormatException("lung_evidence.min_fraction", "invalid lung_evidence.min_fraction",
                    "a fraction in [0, 1]", PythonFormat.repr(minFraction));
        }
        this.minFraction = minFraction;
        this.chosenOn = chosenOn;
    }

    static LungEvidence fromJson(JsonObject o) {
        o.requireKnownKeys(KEYS, "lung evidence");
        return new LungEvidence(o.number("min_fraction"), o.string("chosen_on"));
    }

    /** Lung fractions below this are flagged. */
    public double minFraction() {
        return minFraction;
    }

    /** How {@link #minFraction()} was chosen (the 5th percentile over correct validation predictions). */
    public String chosenOn() {
        return chosenOn;
    }
}
