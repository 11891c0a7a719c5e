package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The crop rule and its gate on synthetic lung maps, against {@code cxr_edge/ops/lungcrop.py}. */
class LungCropTest {
    @Test
    void sameBoxStatusReasonAndMaskAsPython() {
        List<?> cases = (List<?>) GoldenFiles.extra("lungcrop.json");
        for (Object item : cases) {
            JsonObject c = JsonObject.of(item, "case");
            String name = c.string("name");
            CropSpec spec = CropSpec.fromJson(c.object("spec"));
            CropDecision d = new LungCrop(spec).decide(GoldenArray.of(c, "prob").floatImage(),
                    c.integer("image_width"), c.integer("image_height"));
            int[] b = c.intArray("box");
            assertEquals(new CropBox(b[0], b[1], b[2], b[3]), d.box(), name);
            assertEquals(c.string("status"), d.status(), name);
            assertEquals(c.string("reason"), d.reason(), name);
            Diff.assertIdentical(GoldenArray.of(c, "mask").bytes(), d.mask().pixels(), name + " mask");
            System.out.println("LUNGCROP " + name + ": " + d.status() + " " + d.box() + " " + d.reason());
        }
        assertEquals(13, cases.size());
    }

    @Test
    void keepsTheTwoLargestComponentsAndFillsHoles() {
        // 12x8 map: a 3x4 blob with a hole, a 2x4 blob, a 1x1 speck.
        String[] rows = {
            "............",
            ".###...##...",
            ".#.#...##...",
            ".#.#...##...",
            ".###...##.#.",
            "............",
            "............",
            "............",
        };
        float[] p = new float[12 * 8];
        for (int y = 0; y < 8; y++) {
            for (int x = 0; x < 12; x++) {
                p[y * 12 + x] = rows[y].charAt(x) == '#' ? 0.9f : 0.1f;
            }
        }
        int[] significant = new int[1];
        ByteImage mask = LungCrop.cleanMask(new FloatImage(12, 8, p), 0.5f, significant);
        assertEquals(3, significant[0]);
        assertEquals(255, mask.get(2, 2)); // the hole is filled
        assertEquals(255, mask.get(7, 1));
        assertEquals(0, mask.get(10, 4)); // the speck is dropped
    }

    @Test
    void pythonNumberFormatting() {
        assertEquals("0.08", PythonFormat.repr(0.08));
        assertEquals("2.2", PythonFormat.repr(2.2));
        assertEquals("1.0", PythonFormat.repr(1.0));
        assertEquals("100.0", PythonFormat.repr(100.0));
        assertEquals("1e-05", PythonFormat.repr(1e-5));
        assertEquals("0.0001", PythonFormat.repr(1e-4));
        assertEquals("1e+16", PythonFormat.repr(1e16));
        assertEquals("0.1", PythonFormat.repr(0.1));
        assertEquals("-0.5", PythonFormat.repr(-0.5));
        assertEquals("0.12", PythonFormat.fixed(0.125, 2)); // exact binary tie: half to even
        assertEquals("0.38", PythonFormat.fixed(0.375, 2));
        assertEquals("0.01", PythonFormat.fixed(0.005, 2)); // 0.005 is slightly above in binary
        assertEquals("4.84", PythonFormat.fixed(4.8387, 2));
    }
}
