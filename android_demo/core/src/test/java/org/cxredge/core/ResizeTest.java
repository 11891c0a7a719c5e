package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** Float resizing against {@code cv2.resize} on random images (extra golden vectors). */
class ResizeTest {
    @Test
    void bitIdenticalToOpenCv() {
        int n = 0;
        for (Object item : (java.util.List<?>) GoldenFiles.extra("resize.json")) {
            JsonObject c = JsonObject.of(item, "case");
            FloatImage src = GoldenArray.of(c, "src").floatImage();
            int w = c.integer("width");
            int h = c.integer("height");
            FloatImage out = "auto".equals(c.string("kind")) ? Resize.toSize(src, w, h) : Resize.linear(src, w, h);
            assertEquals(w, out.width());
            assertEquals(h, out.height());
            String what = c.string("kind") + " " + src.width() + "x" + src.height() + " -> " + w + "x" + h;
            float[] expected = GoldenArray.of(c, "expected").floats();
            if ("auto".equals(c.string("kind"))) {
                Diff.assertBitIdentical(expected, out.pixels(), what);
            } else {
                // cv2's bilinear float resize runs Intel IPP, which picks its kernel by CPU at run time
                // (AVX2 or AVX-512): an exact 2x shrink differed by 2 ulp between two x86-64 machines
                // with the same wheel. Bit identity is asserted against OpenCV's own kernel below.
                Diff.assertWithinUlps(4, expected, out.pixels(), what + " (IPP kernel, CPU-dispatched)");
            }
            if (c.has("expected_opencv")) {
                FloatImage plain = Resize.linearOpenCv(src, w, h);
                Diff.assertBitIdentical(GoldenArray.of(c, "expected_opencv").floats(), plain.pixels(),
                        what + " (OpenCV kernel without IPP)");
                Diff.assertWithin(1e-5, Diff.maxAbs(plain.pixels(), out.pixels()), what + " IPP vs OpenCV kernel");
            }
            n++;
        }
        assertEquals(15, n);
    }

    @Test
    void fmaIsCorrectlyRounded() {
        java.util.Random rng = new java.util.Random(7);
        for (int i = 0; i < 200_000; i++) {
            float a = (float) rng.nextGaussian();
            float b = (float) rng.nextGaussian() * (i % 3 == 0 ? 1e-8f : 1f);
            float c = (float) rng.nextGaussian();
            assertEquals(Math.fma(a, b, c), Fma.fma(a, b, c), "fma(" + a + ", " + b + ", " + c + ")");
        }
        // Half-way cases: a*b + c exactly between two floats in double, broken by a tiny residue.
        float one = 1f;
        float tiny = Math.ulp(1f) / 2;
        assertEquals(Math.fma(one + Math.ulp(1f), tiny, one), Fma.fma(one + Math.ulp(1f), tiny, one));
        assertEquals(Math.fma(tiny, one, one), Fma.fma(tiny, one, one));
        assertEquals(Math.fma(-tiny, one - Math.ulp(0.5f), one), Fma.fma(-tiny, one - Math.ulp(0.5f), one));
    }

    @Test
    void areaRefusesToEnlarge() {
        assertThrows(IllegalArgumentException.class, () -> Resize.area(new FloatImage(4, 4), 5, 4));
    }

    @Test
    void constantImagesStayConstant() {
        float[] px = new float[37 * 23];
        java.util.Arrays.fill(px, 0.25f);
        FloatImage src = new FloatImage(37, 23, px);
        for (FloatImage out : new FloatImage[] {Resize.area(src, 16, 9), Resize.linear(src, 50, 51)}) {
            for (float v : out.pixels()) {
                assertEquals(0.25f, v, 1e-7f);
            }
        }
    }
}
