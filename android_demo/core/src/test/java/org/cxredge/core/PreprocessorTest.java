package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The preprocessing of the golden samples against the committed golden vectors and, stage by
 * stage, against the extra golden vectors.
 */
class PreprocessorTest {
    /** The committed model-input statistics tolerance this port holds itself to. */
    static final double INPUT_TOLERANCE = 1e-6;

    private static Preprocessor preprocessor() {
        return new Preprocessor(GoldenFiles.manifest().preprocess());
    }

    @Test
    void eightBitImageIsBitIdenticalToTheCommittedGolden() {
        for (String name : GoldenFiles.goldenNames()) {
            JsonObject g = GoldenFiles.goldenSample(name);
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(g.string("file")));
            JsonObject size = g.object("image");
            assertEquals(size.integer("width"), image.width());
            assertEquals(size.integer("height"), image.height());
            PreprocessedImage x = preprocessor().run(image, GoldenFiles.goldenCrop(g));
            GoldenArray expected = GoldenArray.of(g, "preprocessed_u8");
            assertArrayEquals(new int[] {x.u8().height(), x.u8().width()}, expected.shape);
            Diff.assertIdentical(expected.bytes(), x.u8().pixels(), name + " preprocessed_u8");
        }
    }

    @Test
    void modelInputMatchesTheCommittedStatistics() {
        for (String name : GoldenFiles.goldenNames()) {
            JsonObject g = GoldenFiles.goldenSample(name);
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(g.string("file")));
            float[] x = preprocessor().run(image, GoldenFiles.goldenCrop(g)).input();
            JsonObject stats = g.object("model_input");
            PreprocessSpec spec = GoldenFiles.manifest().preprocess();
            assertArrayEquals(stats.intArray("shape"), new int[] {spec.height(), spec.width(), 1});
            double sum = 0;
            for (float v : x) {
                sum += v;
            }
            double mean = sum / x.length;
            double sq = 0;
            for (float v : x) {
                sq += (v - mean) * (v - mean);
            }
            double std = Math.sqrt(sq / x.length);
            Diff.assertWithin(INPUT_TOLERANCE, Math.abs(mean - stats.number("mean")), name + " model input mean");
            Diff.assertWithin(INPUT_TOLERANCE, Math.abs(std - stats.number("std")), name + " model input std");
            double[] first = stats.numberArray("first");
            float[] head = new float[first.length];
            float[] expected = new float[first.length];
            for (int i = 0; i < first.length; i++) {
                head[i] = x[i];
                expected[i] = (float) first[i];
            }
            Diff.assertBitIdentical(expected, head, name + " first model input values");
        }
    }

    @Test
    void everyStageMatchesPython() {
        List<Object> samples = JsonObject.of(GoldenFiles.extra("samples.json"), "").array("samples");
        Preprocessor p = preprocessor();
        for (Object item : samples) {
            JsonObject s = JsonObject.of(item, "sample");
            String name = s.string("file");
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(name));
            // The decoder: javax.imageio here (Android: BitmapFactory) against cv2.imdecode / 255.
            Diff.assertBitIdentical(GoldenArray.of(s, "image").floats(), image.pixels(), name + " decoded image");
            int[] r = s.intArray("region");
            CropBox region = p.region(image.width(), image.height(), null);
            assertEquals(new CropBox(r[0], r[1], r[2], r[3]), region);
            PreprocessSpec spec = GoldenFiles.manifest().preprocess();
            FloatImage resized = Resize.toSize(image.crop(region), spec.height(), spec.width());
            Diff.assertBitIdentical(GoldenArray.of(s, "resized").floats(), resized.pixels(), name + " resized");
            ByteImage q = Preprocessor.quantize(resized);
            Diff.assertIdentical(GoldenArray.of(s, "quantized").bytes(), q.pixels(), name + " quantized");
            ByteImage u8 = p.enhance(q);
            Diff.assertIdentical(GoldenArray.of(s, "preprocessed_u8").bytes(), u8.pixels(), name + " CLAHE+median");
            float[] expected = GoldenArray.of(s, "model_input").floats();
            float[] actual = p.normalize(u8);
            Diff.assertWithin(INPUT_TOLERANCE, Diff.maxAbs(expected, actual), name + " model input (elementwise)");
            Diff.assertBitIdentical(expected, actual, name + " model input");
        }
    }

    @Test
    void cropBoxOverridesTheBorderAndIsChecked() {
        float[] px = new float[40 * 30];
        for (int i = 0; i < px.length; i++) {
            px[i] = (i % 40) / 39f;
        }
        FloatImage image = new FloatImage(40, 30, px);
        Preprocessor p = new Preprocessor(new PreprocessSpec(16, 16, 3, 0.1, false, 2.0, 8, 0, "unit", 1));
        assertEquals(new CropBox(4, 3, 36, 27), p.region(40, 30, null));
        assertEquals(new CropBox(1, 2, 30, 20), p.region(40, 30, new CropBox(1, 2, 30, 20)));
        PreprocessedImage x = p.run(image, new CropBox(0, 0, 40, 30));
        assertEquals(16 * 16 * 3, x.input().length);
        assertEquals(x.input()[0], x.input()[1]);
        assertEquals(x.input()[0], x.input()[2]);
        InputImageException e = assertThrows(InputImageException.class,
                () -> p.run(image, new CropBox(0, 0, 41, 30)));
        assertEquals("inside 40x30", e.expected());
        assertEquals("(0, 0, 41, 30)", e.received());
        assertThrows(InputImageException.class, () -> p.run(image, new CropBox(5, 5, 5, 9)));
    }

    @Test
    void quantizeRoundsHalfUpAndClips() {
        FloatImage f = new FloatImage(6, 1, new float[] {-0.5f, 0f, 0.5f / 255f, 1.5f / 255f, 1f, 2f});
        byte[] q = Preprocessor.quantize(f).pixels();
        assertArrayEquals(new byte[] {0, 0, 1, 2, (byte) 255, (byte) 255}, q);
    }
}
