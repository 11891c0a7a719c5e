package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Paths;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;

/** Colour to grey against the Python reader, on PNGs it wrote (extra golden folder). */
class GreyscaleTest {
    @Test
    void sameGreyImageAsThePythonReader() throws IOException {
        List<?> cases = (List<?>) GoldenFiles.extra("colour.json");
        for (Object item : cases) {
            JsonObject c = JsonObject.of(item, "case");
            BufferedImage img = ImageIO.read(Paths.get(System.getProperty("cxr.golden.extra"), c.string("file")).toFile());
            int w = img.getWidth();
            int h = img.getHeight();
            int[] argb = img.getRGB(0, 0, w, h, null, 0, w);
            FloatImage grey = Greyscale.fromArgb(argb, w, h);
            Diff.assertBitIdentical(GoldenArray.of(c, "expected").floats(), grey.pixels(), c.string("file"));
            boolean pythonConverted = "RGB".equals(c.raw("converted_from"));
            assertEquals(pythonConverted, Greyscale.isColour(argb), c.string("file"));
        }
        assertEquals(4, cases.size());
    }

    @Test
    void lumaWeights() {
        assertEquals(255, Greyscale.luma(255, 255, 255));
        assertEquals(76, Greyscale.luma(255, 0, 0));
        assertEquals(150, Greyscale.luma(0, 255, 0));
        assertEquals(29, Greyscale.luma(0, 0, 255));
    }
}
