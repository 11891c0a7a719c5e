package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/** Comparisons that report where arrays differ, and the measured tolerances. */
final class Diff {
    private Diff() {
    }

    /** Largest absolute difference. */
    static double maxAbs(float[] a, float[] b) {
        assertEquals(a.length, b.length, "array lengths");
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs((double) a[i] - b[i]));
        }
        return m;
    }

    /** Largest absolute difference. */
    static double maxAbs(double[] a, double[] b) {
        assertEquals(a.length, b.length, "array lengths");
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    /** Asserts bit-identical float arrays, naming the first difference. */
    static void assertBitIdentical(float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": lengths");
        int count = 0;
        int first = -1;
        for (int i = 0; i < expected.length; i++) {
            if (Float.floatToIntBits(expected[i]) != Float.floatToIntBits(actual[i])) {
                count++;
                if (first < 0) {
                    first = i;
                }
            }
        }
        if (count > 0) {
            fail(what + ": " + count + " of " + expected.length + " values differ (max |diff| "
                    + maxAbs(expected, actual) + "); first at index " + first + ": expected " + expected[first]
                    + ", got " + actual[first]);
        }
    }

    /** Asserts that no two floats are more than {@code maxUlps} representable values apart; prints the worst. */
    static void assertWithinUlps(int maxUlps, float[] expected, float[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": lengths");
        long worst = 0;
        int at = 0;
        for (int i = 0; i < expected.length; i++) {
            long d = Math.abs((long) ordered(expected[i]) - ordered(actual[i]));
            if (d > worst) {
                worst = d;
                at = i;
            }
        }
        System.out.println("MEASURED " + what + ": max " + worst + " ulp (tolerance " + maxUlps + ")");
        if (worst > maxUlps) {
            fail(what + ": " + worst + " ulp apart at index " + at + " (tolerance " + maxUlps + "): expected "
                    + expected[at] + ", got " + actual[at]);
        }
    }

    /** Float bits mapped to integers whose order and distance follow the floats' (sign-magnitude to two's). */
    private static int ordered(float f) {
        int bits = Float.floatToIntBits(f);
        return bits < 0 ? Integer.MIN_VALUE - bits : bits;
    }

    /** Asserts identical byte arrays, naming the first difference. */
    static void assertIdentical(byte[] expected, byte[] actual, String what) {
        assertEquals(expected.length, actual.length, what + ": lengths");
        int count = 0;
        int first = -1;
        int worst = 0;
        for (int i = 0; i < expected.length; i++) {
            if (expected[i] != actual[i]) {
                count++;
                worst = Math.max(worst, Math.abs((expected[i] & 0xFF) - (actual[i] & 0xFF)));
                if (first < 0) {
                    first = i;
                }
            }
        }
        if (count > 0) {
            fail(what + ": " + count + " of " + expected.length + " values differ (max |diff| " + worst
                    + "); first at index " + first + ": expected " + (expected[first] & 0xFF) + ", got "
                    + (actual[first] & 0xFF));
        }
    }

    /** Asserts a tolerance and prints the measured difference (collected into the test report). */
    static void assertWithin(double tolerance, double measured, String what) {
        System.out.println("MEASURED " + what + ": max |diff| = " + measured + " (tolerance " + tolerance + ")");
        if (!(measured <= tolerance)) {
            fail(what + ": max |diff| " + measured + " exceeds " + tolerance);
        }
    }
}
