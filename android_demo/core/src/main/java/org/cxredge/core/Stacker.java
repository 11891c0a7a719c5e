package org.cxredge.core;

import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

/**
 * A fitted stacking meta-learner, {@code softmax(relu(x @ w1 + b1) @ w2 + b2)}, where {@code x}
 * is the members' probabilities concatenated member by member. Mirrors
 * {@code cxr_edge.ops.ensemble.Stacker}; the weights come from the manifest.
 */
public final class Stacker {
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("w1", "b1", "w2", "b2", "l2"));

    private final double[][] w1;
    private final double[] b1;
    private final double[][] w2;
    private final double[] b2;
    private final double l2;

    /**
     * @param w1 {@code (n_models * n_classes, hidden)} first-layer weights
     * @param b1 {@code (hidden,)} first-layer biases
     * @param w2 {@code (hidden, n_classes)} output weights
     * @param b2 {@code (n_classes,)} output biases
     * @param l2 the L2 strength chosen when fitting (provenance only)
     */
    public Stacker(double[][] w1, double[] b1, double[][] w2, double[] b2, double l2) {
        this.w1 = w1;
        this.b1 = b1;
        this.w2 = w2;
        this.b2 = b2;
        this.l2 = l2;
    }

    /** Parses {@code ensemble.stacking}. */
    public static Stacker fromJson(JsonObject o) {
        o.requireKnownKeys(KEYS, "stacking meta-learner");
        Stacker s = new Stacker(o.numberMatrix("w1"), o.numberArray("b1"), o.numberMatrix("w2"), o.numberArray("b2"),
                o.number("l2", 0.0));
        s.checkShapes(o.path());
        return s;
    }

    private void checkShapes(String field) {
        int hidden = b1.length;
        for (double[] row : w1) {
            if (row.length != hidden) {
                throw new BundleFormatException(field + ".w1", "stacking weights are not a matrix",
                        "rows of " + hidden + " (len(b1))", "a row of " + row.length);
            }
        }
        if (w2.length != hidden) {
            throw new BundleFormatException(field + ".w2", "stacking weights do not chain",
                    hidden + " rows (len(b1))", w2.length + " rows");
        }
        for (double[] row : w2) {
            if (row.length != b2.length) {
                throw new BundleFormatException(field + ".w2", "stacking weights are not a matrix",
                        "rows of " + b2.length + " (len(b2))", "a row of " + row.length);
            }
        }
    }

    /** Number of inputs ({@code n_models * n_classes}). */
    public int inputs() {
        return w1.length;
    }

    /** Number of outputs ({@code n_classes}). */
    public int outputs() {
        return b2.length;
    }

    /** The L2 strength chosen when fitting. */
    public double l2() {
        return l2;
    }

    /**
     * Combines the members' probabilities of one image.
     *
     * @param memberProbs {@code [n_models][n_classes]} in the ensemble's member order
     * @return {@code n_classes} probabilities summing to 1
     */
    public double[] forward(double[][] memberProbs) {
        int n = 0;
        for (double[] p : memberProbs) {
            n += p.length;
        }
        if (n != w1.length) {
            throw new ModelOutputException("stacker input size mismatch", w1.length + " features",
                    n + " (models x classes)");
        }
        double[] x = new double[n];
        int k = 0;
        for (double[] p : memberProbs) {
            for (double v : p) {
                x[k++] = v;
            }
        }
        int hidden = b1.length;
        double[] h = new double[hidden];
        for (int j = 0; j < hidden; j++) {
            double s = 0.0;
            for (int i = 0; i < n; i++) {
                s += x[i] * w1[i][j];
            }
            h[j] = Math.max(s + b1[j], 0.0);
        }
        double[] z = new double[b2.length];
        for (int c = 0; c < z.length; c++) {
            double s = 0.0;
            for (int j = 0; j < hidden; j++) {
                s += h[j] * w2[j][c];
            }
            z[c] = s + b2[c];
        }
        return Ensemble.softmax(z);
    }
}
