package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import org.junit.jupiter.api.Test;

/** CLAHE against OpenCV's {@code cv::CLAHE} (extra golden vectors). */
class ClaheTest {
    @Test
    void bitIdenticalToOpenCv() {
        List<?> cases = (List<?>) GoldenFiles.extra("clahe.json");
        for (Object item : cases) {
            JsonObject c = JsonObject.of(item, "case");
            ByteImage src = GoldenArray.of(c, "src").byteImage();
            int tiles = c.integer("tiles");
            ByteImage out = new Clahe(c.number("clip"), tiles, tiles).apply(src);
            String what = "CLAHE " + src.width() + "x" + src.height() + " clip " + c.number("clip") + " tiles " + tiles;
            Diff.assertIdentical(GoldenArray.of(c, "expected").bytes(), out.pixels(), what);
        }
        assertEquals(8, cases.size());
    }

    @Test
    void equalizeHistIsBitIdenticalToOpenCv() {
        List<?> cases = (List<?>) GoldenFiles.extra("equalize.json");
        for (Object item : cases) {
            JsonObject c = JsonObject.of(item, "case");
            ByteImage src = GoldenArray.of(c, "src").byteImage();
            Diff.assertIdentical(GoldenArray.of(c, "expected").bytes(), Clahe.equalizeHist(src).pixels(),
                    "equalizeHist " + src.width() + "x" + src.height());
        }
        assertEquals(9, cases.size());
    }

    @Test
    void reflect101MatchesOpenCvBorderInterpolate() {
        // gfedcb|abcdefgh|gfedcba for len 8
        int[] expected = {6, 5, 4, 3, 2, 1};
        for (int i = 0; i < 6; i++) {
            assertEquals(expected[i], Clahe.reflect101(8 + i, 8));
        }
        assertEquals(1, Clahe.reflect101(-1, 8));
        assertEquals(0, Clahe.reflect101(3, 1));
    }

    @Test
    void roundsHalfToEven() {
        assertEquals(2, Clahe.roundToByte(2.5f));
        assertEquals(4, Clahe.roundToByte(3.5f));
        assertEquals(255, Clahe.roundToByte(300f));
        assertEquals(0, Clahe.roundToByte(-3f));
    }
}
