package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** Steps 7-8 against numpy (extra golden vectors), and numpy's pairwise summation. */
class NormalizeTest {
    @Test
    void bitIdenticalToNumpy() {
        int n = 0;
        for (Object item : (java.util.List<?>) GoldenFiles.extra("normalize.json")) {
            JsonObject c = JsonObject.of(item, "case");
            ByteImage u8 = GoldenArray.of(c, "u8").byteImage();
            PreprocessSpec spec = new PreprocessSpec(Math.max(u8.height(), 8), Math.max(u8.width(), 8),
                    c.integer("channels"), 0.0, true, 2.0, 8, 3, c.string("normalize"), 1);
            float[] out = new Preprocessor(spec).normalize(u8);
            String what = c.string("normalize") + " x" + c.integer("channels") + " on " + u8.width() + "x"
                    + u8.height();
            Diff.assertBitIdentical(GoldenArray.of(c, "expected").floats(), out, what);
            n++;
        }
        assertEquals(6, n);
    }

    @Test
    void pairwiseSumOfSmallRuns() {
        float[] v = {1e8f, 1f, -1e8f, 1f, 2f, 3f, 4f, 5f, 6f};
        // n >= 8: eight accumulators ((1e8 + 1) + (-1e8 + 1)) + ((2 + 3) + (4 + 5)) = 14, then + 6;
        // the 1s vanish next to 1e8 in float32, which a sequential sum would not show the same way.
        assertEquals(20f, PairwiseSum.sum(v), 0f);
        assertEquals(0f, PairwiseSum.sum(new float[0]), 0f);
    }
}
