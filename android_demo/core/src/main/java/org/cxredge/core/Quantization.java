package org.cxredge.core;

/**
 * The quantisation maths at the model boundary ({@code cxr_edge/runtime/engine.py}), in float32 exactly as
 * numpy evaluates it (a Python float scale meets a float32 array as a float32):
 *
 * <ul>
 *   <li>quantise: {@code clip(round_half_even(x / scale) + zero_point, min, max)};
 *   <li>dequantise: {@code (q - zero_point) * scale};
 *   <li>renormalise quantised probabilities: {@code p / sum(p)} (uniform when the sum is 0),
 *       because an 8-bit softmax misses 1 by a few steps of 1/256.
 * </ul>
 */
public final class Quantization {
    private Quantization() {
    }

    /**
     * Float values to the tensor's storage type.
     *
     * @param x float values in tensor order
     * @param spec the model's input tensor
     */
    public static RawTensor quantize(float[] x, TensorSpec spec) {
        if (!spec.isQuantized()) {
            return RawTensor.ofFloats(spec, x.clone());
        }
        float scale = checkedScale(spec);
        float zero = spec.zeroPoint();
        int min = spec.dtype().min();
        int max = spec.dtype().max();
        byte[] q = new byte[x.length];
        for (int i = 0; i < x.length; i++) {
            float v = (float) Math.rint(x[i] / scale) + zero;
            int c = v < min ? min : (v > max ? max : (int) v);
            q[i] = (byte) c;
        }
        return RawTensor.ofBytes(spec, q);
    }

    /** A tensor in its storage type to float32 values. */
    public static float[] dequantize(RawTensor t) {
        TensorSpec spec = t.spec();
        if (!spec.isQuantized()) {
            return t.floats().clone();
        }
        float scale = checkedScale(spec);
        float zero = spec.zeroPoint();
        byte[] q = t.bytes();
        float[] out = new float[q.length];
        boolean unsigned = spec.dtype() == DType.UINT8;
        for (int i = 0; i < q.length; i++) {
            int v = unsigned ? q[i] & 0xFF : q[i];
            out[i] = (v - zero) * scale;
        }
        return out;
    }

    /** Stored integer value {@code i} of an 8-bit tensor (signed for int8, 0..255 for uint8). */
    public static int storedValue(RawTensor t, int i) {
        byte b = t.bytes()[i];
        return t.spec().dtype() == DType.UINT8 ? b & 0xFF : b;
    }

    /**
     * Renormalises probabilities read from a quantised output (no-op for float outputs).
     *
     * @param probs dequantised probabilities
     * @param spec the output tensor they came from
     */
    public static float[] renormalize(float[] probs, TensorSpec spec) {
        if (!spec.isQuantized()) {
            return probs;
        }
        float total = 0f;
        for (float p : probs) {
            total += p;
        }
        float[] out = new float[probs.length];
        for (int i = 0; i < probs.length; i++) {
            out[i] = total > 0 ? probs[i] / total : (float) (1.0 / probs.length);
        }
        return out;
    }

    private static float checkedScale(TensorSpec spec) {
        if (!(spec.scale() > 0) || Double.isInfinite(spec.scale())) {
            throw new BundleFormatException(null, "quantised tensor without a usable scale", "scale > 0",
                    String.valueOf(spec.scale()));
        }
        return (float) spec.scale();
    }
}
