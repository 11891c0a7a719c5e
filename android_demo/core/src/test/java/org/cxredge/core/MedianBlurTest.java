package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.api.Test;

/** The median filter against {@code cv2.medianBlur} (extra golden vectors). */
class MedianBlurTest {
    @Test
    void bitIdenticalToOpenCv() {
        for (Object item : (java.util.List<?>) GoldenFiles.extra("median.json")) {
            JsonObject c = JsonObject.of(item, "case");
            ByteImage src = GoldenArray.of(c, "src").byteImage();
            int k = c.integer("ksize");
            Diff.assertIdentical(GoldenArray.of(c, "expected").bytes(), new MedianBlur(k).apply(src).pixels(),
                    "median " + k + " on " + src.width() + "x" + src.height());
        }
    }

    @Test
    void replicatesBorders() {
        // 3x3 median with replicated borders of a 3x1 row: windows {a,a,b}, {a,b,c}, {b,c,c} x3 rows.
        ByteImage row = new ByteImage(3, 1, new byte[] {10, 50, 20});
        assertArrayEquals(new byte[] {10, 20, 20}, new MedianBlur(3).apply(row).pixels());
    }

    @Test
    void refusesEvenKernels() {
        assertThrows(IllegalArgumentException.class, () -> new MedianBlur(4));
        assertThrows(IllegalArgumentException.class, () -> new MedianBlur(1));
    }
}
