package org.cxredge.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Base64;
import java.util.List;

/**
 * One array of the golden files, {@code {"dtype", "shape", "base64"}} with little-endian bytes
 * ({@code cxr_edge.evaluation.golden.encode}).
 */
final class GoldenArray {
    final String dtype;
    final int[] shape;
    private final ByteBuffer data;

    private GoldenArray(String dtype, int[] shape, byte[] bytes) {
        this.dtype = dtype;
        this.shape = shape;
        this.data = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Decodes an encoded array. */
    static GoldenArray of(Object value) {
        JsonObject o = JsonObject.of(value, "array");
        return new GoldenArray(o.string("dtype"), o.intArray("shape"), Base64.getDecoder().decode(o.string("base64")));
    }

    /** Decodes {@code key} of an object. */
    static GoldenArray of(JsonObject o, String key) {
        return of(o.raw(key));
    }

    int size() {
        int n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    int dim(int i) {
        return shape[i];
    }

    /** Values as float32 (float16/float32/float64 arrays). */
    float[] floats() {
        int n = size();
        float[] out = new float[n];
        ByteBuffer b = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        switch (dtype) {
            case "float32":
                b.asFloatBuffer().get(out);
                return out;
            case "float64":
                for (int i = 0; i < n; i++) {
                    out[i] = (float) b.getDouble(i * 8);
                }
                return out;
            case "float16":
                for (int i = 0; i < n; i++) {
                    out[i] = halfToFloat(b.getShort(i * 2));
                }
                return out;
            default:
                throw new IllegalStateException("not a float array: " + dtype);
        }
    }

    /** Values as double (float64 arrays exactly, float32 widened). */
    double[] doubles() {
        int n = size();
        double[] out = new double[n];
        ByteBuffer b = data.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        if ("float64".equals(dtype)) {
            b.asDoubleBuffer().get(out);
            return out;
        }
        float[] f = floats();
        for (int i = 0; i < n; i++) {
            out[i] = f[i];
        }
        return out;
    }

    /** Raw bytes of an 8-bit array (uint8 or int8). */
    byte[] bytes() {
        if (!"uint8".equals(dtype) && !"int8".equals(dtype)) {
            throw new IllegalStateException("not an 8-bit array: " + dtype);
        }
        byte[] out = new byte[size()];
        data.duplicate().get(out);
        return out;
    }

    /** A 2-D float array as an image. */
    FloatImage floatImage() {
        return new FloatImage(shape[1], shape[0], floats());
    }

    /** A 2-D 8-bit array as an image. */
    ByteImage byteImage() {
        return new ByteImage(shape[1], shape[0], bytes());
    }

    /** A 2-D array as rows of doubles. */
    double[][] matrix() {
        double[] flat = doubles();
        double[][] out = new double[shape[0]][shape[1]];
        for (int r = 0; r < shape[0]; r++) {
            System.arraycopy(flat, r * shape[1], out[r], 0, shape[1]);
        }
        return out;
    }

    private static float halfToFloat(short h) {
        int bits = h & 0xFFFF;
        int sign = (bits >>> 15) << 31;
        int exp = (bits >>> 10) & 0x1F;
        int mant = bits & 0x3FF;
        if (exp == 0) {
            return Float.intBitsToFloat(sign) + (sign != 0 ? -1 : 1) * mant * 0x1p-24f;
        }
        if (exp == 31) {
            return Float.intBitsToFloat(sign | 0x7F800000 | (mant << 13));
        }
        return Float.intBitsToFloat(sign | ((exp - 15 + 127) << 23) | (mant << 13));
    }

    /** A JSON list of numbers as doubles. */
    static double[] numbers(Object list) {
        List<?> items = (List<?>) list;
        double[] out = new double[items.size()];
        for (int i = 0; i < out.length; i++) {
            out[i] = ((Number) items.get(i)).doubleValue();
        }
        return out;
    }
}
