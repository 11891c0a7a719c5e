package org.cxredge.core;

import java.util.Arrays;

/**
 * Combining member models' probabilities: {@code vote}, {@code mean}, {@code weighted} and
 * {@code stacking}, then the temperature. Mirrors {@code cxr_edge.ops.ensemble.combine} and
 * {@code apply_temperature} operation by operation, in double precision like numpy.
 */
public final class Ensemble {
    private static final double EPS = 1e-12;

    private Ensemble() {
    }

    /**
     * What the runtime outputs for the members' probabilities of one image: the combiner, then the
     * temperature when it is not 1 ({@code EnsembleConfig.apply} in Python).
     *
     * @param config the bundle's ensemble configuration
     * @param memberProbs {@code [n_members][n_classes]} in {@code config.members()} order
     * @return {@code n_classes} probabilities summing to 1
     */
    public static double[] apply(EnsembleConfig config, double[][] memberProbs) {
        double[] probs = combine(memberProbs, config.method(), config.weights(), config.stacking());
        return config.temperature() != 1.0 ? applyTemperature(probs, config.temperature()) : probs;
    }

    /**
     * Combines per-model class probabilities of one image.
     *
     * @param probs {@code [n_models][n_classes]}
     * @param method one of {@link EnsembleConfig#METHODS}
     * @param weights one non-negative weight per model for {@code weighted}
     * @param stacker the meta-learner for {@code stacking}
     */
    public static double[] combine(double[][] probs, String method, double[] weights, Stacker stacker) {
        if (probs.length == 0) {
            throw new ModelOutputException("nothing to combine", "(n_models, n_classes) probabilities", "0 models");
        }
        int k = probs[0].length;
        for (double[] p : probs) {
            if (p.length != k) {
                throw new ModelOutputException("members disagree on the number of classes", k + " classes",
                        p.length + " classes");
            }
        }
        switch (method) {
            case "mean":
                return mean(probs);
            case "weighted":
                return weighted(probs, weights);
            case "vote":
                return vote(probs);
            case "stacking":
                if (stacker == null) {
                    throw new BundleFormatException("ensemble.stacking", "stacking needs a fitted meta-learner",
                            "a Stacker", "None");
                }
                return stacker.forward(probs);
            default:
                throw new BundleFormatException("ensemble.method", "unknown ensemble method",
                        String.join(" or ", EnsembleConfig.METHODS), method);
        }
    }

    /** Arithmetic mean over members (members added in order, then divided, as numpy does). */
    public static double[] mean(double[][] probs) {
        double[] out = probs[0].clone();
        for (int m = 1; m < probs.length; m++) {
            for (int c = 0; c < out.length; c++) {
                out[c] += probs[m][c];
            }
        }
        for (int c = 0; c < out.length; c++) {
            out[c] /= probs.length;
        }
        return out;
    }

    private static double[] weighted(double[][] probs, double[] weights) {
        boolean valid = weights != null && weights.length == probs.length;
        double total = 0.0;
        if (valid) {
            for (double w : weights) {
                valid &= w >= 0;
                total += w;
            }
        }
        if (!valid || !(total > 0)) {
            throw new BundleFormatException("ensemble.weights", "invalid ensemble weights",
                    probs.length + " non-negative weights", weights == null ? "None" : Arrays.toString(weights));
        }
        double[] out = new double[probs[0].length];
        for (int m = 0; m < probs.length; m++) {
            double w = weights[m] / total;
            for (int c = 0; c < out.length; c++) {
                out[c] += w * probs[m][c];
            }
        }
        return out;
    }

    /**
     * Majority vote of the members' argmax labels; ties go to the highest mean probability, then
     * the lowest label index. Returns the vote shares with a 1e-6 bonus for the winner, so argmax
     * of the result is the tie-broken winner and it still sums to 1.
     */
    public static double[] vote(double[][] probs) {
        int k = probs[0].length;
        double[] votes = new double[k];
        for (double[] p : probs) {
            votes[argmax(p)] += 1.0;
        }
        double[] mean = mean(probs);
        double[] score = new double[k];
        for (int c = 0; c < k; c++) {
            score[c] = votes[c] + mean[c] * 0.5;
        }
        int winner = argmax(score);
        double[] out = new double[k];
        for (int c = 0; c < k; c++) {
            double share = votes[c] / probs.length;
            out[c] = (share + (c == winner ? 1e-6 : 0.0)) / (1.0 + 1e-6);
        }
        return out;
    }

    /**
     * Temperature scaling: {@code softmax(log(p) / T)} with p clipped to [1e-12, 1].
     *
     * @throws BundleFormatException T is not a finite positive number
     */
    public static double[] applyTemperature(double[] probs, double temperature) {
        if (!(Double.isFinite(temperature) && temperature > 0)) {
            throw new BundleFormatException("ensemble.temperature", "invalid temperature", "a finite T > 0",
                    String.valueOf(temperature));
        }
        double[] z = new double[probs.length];
        for (int c = 0; c < z.length; c++) {
            z[c] = Math.log(Math.min(Math.max(probs[c], EPS), 1.0)) / temperature;
        }
        return softmax(z);
    }

    /** Numerically stable softmax (the maximum subtracted first). */
    public static double[] softmax(double[] z) {
        double max = Double.NEGATIVE_INFINITY;
        for (double v : z) {
            max = Math.max(max, v);
        }
        double[] e = new double[z.length];
        double sum = 0.0;
        for (int i = 0; i < z.length; i++) {
            e[i] = Math.exp(z[i] - max);
            sum += e[i];
        }
        for (int i = 0; i < z.length; i++) {
            e[i] /= sum;
        }
        return e;
    }

    /** Index of the largest value (the first one on ties, as numpy's argmax). */
    public static int argmax(double[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) {
            if (values[i] > values[best]) {
                best = i;
            }
        }
        return best;
    }

    /** Index of the largest value (the first one on ties). */
    public static int argmax(float[] values) {
        int best = 0;
        for (int i = 1; i < values.length; i++) {
            if (values[i] > values[best]) {
                best = i;
            }
        }
        return best;
    }
}
