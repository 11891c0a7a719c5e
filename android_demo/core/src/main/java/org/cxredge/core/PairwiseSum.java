package org.cxredge.core;

/**
 * numpy's float32 summation ({@code pairwise_sum_FLOAT} in {@code loops_utils.h}), reproduced so
 * that {@code x.mean()} and {@code x.std()} of a contiguous float32 image come out bit-identical:
 * blocks of up to 128 values are summed with 8 interleaved accumulators, longer runs are split in
 * two (the first half a multiple of 8) and the halves added.
 */
public final class PairwiseSum {
    private static final int BLOCK = 128;

    private PairwiseSum() {
    }

    /** The float32 sum of {@code values[from, from + n)} in numpy's order. */
    public static float sum(float[] values, int from, int n) {
        if (n < 8) {
            float res = 0f;
            for (int i = 0; i < n; i++) {
                res += values[from + i];
            }
            return res;
        }
        if (n <= BLOCK) {
            float r0 = values[from];
            float r1 = values[from + 1];
            float r2 = values[from + 2];
            float r3 = values[from + 3];
            float r4 = values[from + 4];
            float r5 = values[from + 5];
            float r6 = values[from + 6];
            float r7 = values[from + 7];
            int i;
            for (i = 8; i < n - (n % 8); i += 8) {
                int p = from + i;
                r0 += values[p];
                r1 += values[p + 1];
                r2 += values[p + 2];
                r3 += values[p + 3];
                r4 += values[p + 4];
                r5 += values[p + 5];
                r6 += values[p + 6];
                r7 += values[p + 7];
            }
            float res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7));
            for (; i < n; i++) {
                res += values[from + i];
            }
            return res;
        }
        int n2 = n / 2;
        n2 -= n2 % 8;
        return sum(values, from, n2) + sum(values, from + n2, n - n2);
    }

    /** The float32 sum of all values. */
    public static float sum(float[] values) {
        return sum(values, 0, values.length);
    }
}
