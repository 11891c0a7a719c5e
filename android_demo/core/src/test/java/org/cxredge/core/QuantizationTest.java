package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Quantisation maths against {@code cxr_edge/runtime/engine.py}, tensor buffers and output binding. */
class QuantizationTest {
    private static final TensorSpec INT8_PROBS = new TensorSpec(new int[] {1, 3}, DType.INT8, 0.00390625, -128);

    @Test
    void bitIdenticalToTheEngine() {
        JsonObject q = JsonObject.of(((List<?>) GoldenFiles.extra("quantization.json")).get(0), "quantization");
        for (Object item : q.array("tensor_cases")) {
            JsonObject c = JsonObject.of(item, "case");
            TensorSpec spec = new TensorSpec(new int[] {1, 64}, DType.fromJson(c.string("dtype"), "dtype"),
                    c.number("scale"), c.integer("zero_point"));
            RawTensor t = Quantization.quantize(GoldenArray.of(c, "x").floats(), spec);
            Diff.assertIdentical(GoldenArray.of(c, "q").bytes(), t.bytes(), c.string("dtype") + " quantize");
            Diff.assertBitIdentical(GoldenArray.of(c, "dequantized").floats(), Quantization.dequantize(t),
                    c.string("dtype") + " dequantize");
        }
        for (Object item : q.array("renormalise")) {
            JsonObject c = JsonObject.of(item, "case");
            RawTensor t = RawTensor.ofBytes(INT8_PROBS, GoldenArray.of(c, "q").bytes());
            float[] p = Quantization.renormalize(Quantization.dequantize(t), INT8_PROBS);
            Diff.assertBitIdentical(GoldenArray.of(c, "expected").floats(), p, "renormalise " + Arrays.toString(p));
        }
    }

    @Test
    void roundsHalfToEvenAndClips() {
        TensorSpec s = new TensorSpec(new int[] {1, 6}, DType.INT8, 0.5, 0);
        byte[] q = Quantization.quantize(new float[] {0.25f, 0.75f, -0.25f, 1000f, -1000f, 1.25f}, s).bytes();
        assertArrayEquals(new byte[] {0, 2, 0, 127, -128, 2}, q);
        TensorSpec u = new TensorSpec(new int[] {1, 3}, DType.UINT8, 1.0, 10);
        RawTensor t = Quantization.quantize(new float[] {-20f, 0f, 300f}, u);
        assertEquals(0, Quantization.storedValue(t, 0));
        assertEquals(10, Quantization.storedValue(t, 1));
        assertEquals(255, Quantization.storedValue(t, 2));
        assertArrayEquals(new float[] {-10f, 0f, 245f}, Quantization.dequantize(t));
    }

    @Test
    void floatTensorsPassThrough() {
        TensorSpec f = new TensorSpec(new int[] {1, 3}, DType.FLOAT32, 0, 0);
        float[] x = {0.1f, 0.2f, 0.7f};
        assertArrayEquals(x, Quantization.dequantize(Quantization.quantize(x, f)));
        assertArrayEquals(x, Quantization.renormalize(x, f));
    }

    @Test
    void refusesAQuantizedTensorWithoutScale() {
        TensorSpec bad = new TensorSpec(new int[] {1, 1}, DType.INT8, 0.0, 0);
        BundleFormatException e = assertThrows(BundleFormatException.class,
                () -> Quantization.quantize(new float[] {1f}, bad));
        assertEquals("scale > 0", e.expected());
    }

    @Test
    void byteBuffersRoundTrip() {
        TensorSpec f = new TensorSpec(new int[] {1, 2, 2, 1}, DType.FLOAT32, 0, 0);
        RawTensor t = RawTensor.ofFloats(f, new float[] {1f, -2f, 3.5f, Float.MIN_VALUE});
        ByteBuffer b = t.toByteBuffer();
        assertEquals(16, b.capacity());
        assertArrayEquals(t.floats(), RawTensor.fromByteBuffer(f, b).floats());
        RawTensor q = RawTensor.ofBytes(INT8_PROBS, new byte[] {-128, 0, 127});
        assertArrayEquals(q.bytes(), RawTensor.fromByteBuffer(INT8_PROBS, q.toByteBuffer()).bytes());
        assertThrows(ModelOutputException.class, () -> RawTensor.ofFloats(f, new float[3]));
        assertThrows(ModelOutputException.class, () -> RawTensor.ofBytes(f, new byte[4]));
        assertThrows(ModelOutputException.class, () -> RawTensor.fromByteBuffer(f, ByteBuffer.allocate(8)));
    }

    @Test
    void bindsOutputsByShapeAndChecksThem() {
        ModelEntry int8 = GoldenFiles.manifest().models().stream()
                .filter(e -> e.input().dtype() == DType.INT8).findFirst().orElseThrow();
        TensorSpec probs = int8.outputs().get("probs");
        TensorSpec features = int8.outputs().get("features");
        // TFLite's order differs from the manifest's: probs first, then features.
        OutputBinding b = OutputBinding.match(int8, int8.input(), Arrays.asList(probs, features));
        assertEquals(1, b.index("features"));
        assertEquals(0, b.index("probs"));
        assertEquals(Arrays.asList("features", "probs"), Arrays.asList(b.indexByRole().keySet().toArray()));

        TensorSpec wrongScale = new TensorSpec(probs.shape(), DType.INT8, 0.5, -128);
        BundleFormatException e = assertThrows(BundleFormatException.class,
                () -> OutputBinding.match(int8, int8.input(), Arrays.asList(wrongScale, features)));
        assertEquals(wrongScale.toString(), e.expected());
        assertThrows(BundleFormatException.class, () -> OutputBinding.match(int8, int8.input(), Arrays.asList(probs)));
        TensorSpec otherShape = new TensorSpec(new int[] {1, 4}, DType.INT8, 0.00390625, -128);
        assertThrows(BundleFormatException.class,
                () -> OutputBinding.match(int8, int8.input(), Arrays.asList(otherShape, features)));
        TensorSpec floatInput = new TensorSpec(int8.input().shape(), DType.FLOAT32, 0, 0);
        assertThrows(BundleFormatException.class,
                () -> OutputBinding.match(int8, floatInput, Arrays.asList(probs, features)));
        Map<String, Integer> none = b.indexByRole();
        assertThrows(UnsupportedOperationException.class, () -> none.put("x", 1));
    }
}
