package org.cxredge.core;

/**
 * A correctly rounded float32 fused multiply-add, {@code round(a * b + c)} with one rounding, that
 * runs on every Android version ({@code Math.fma} needs Java 9 APIs that older Android releases
 * lack). Intel IPP's resize kernels, which the Python runtime's OpenCV uses on x86-64, compute with
 * FMA instructions; {@link Resize#linear} mirrors them with this.
 *
 * <p>Method: {@code a * b} is exact in double (24 + 24 bits); the double sum {@code t = p + c} is
 * rounded once, its error {@code e} is recovered exactly (TwoSum), and the double-to-float rounding
 * of {@code t} is corrected when {@code t} lies exactly half-way between two floats and {@code e}
 * would break the tie.
 */
public final class Fma {
    private Fma() {
    }

    /** {@code a * b + c} rounded once to float32. */
    public static float fma(float a, float b, float c) {
        double p = (double) a * (double) b;
        double t = p + c;
        if (Double.isNaN(t) || Double.isInfinite(t)) {
            return (float) t;
        }
        double bb = t - p;
        double e = (p - (t - bb)) + (c - bb);
        if (e == 0.0 || !isFloatMidpoint(t)) {
            return (float) t;
        }
        return (float) (e > 0 ? Math.nextUp(t) : Math.nextDown(t));
    }

    /** Whether a double lies exactly half-way between two adjacent floats (normal range). */
    private static boolean isFloatMidpoint(double t) {
        float f = (float) t;
        if (f == t) {
            return false;
        }
        double lo = f < t ? f : Math.nextDown(f);
        double hi = f < t ? Math.nextUp(f) : f;
        return t - lo == hi - t;
    }
}
