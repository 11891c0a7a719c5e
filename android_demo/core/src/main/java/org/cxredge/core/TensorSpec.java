package org.cxredge.core;

import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

/**
 * A model input or output tensor as stored in the {@code .tflite} file: shape (batch included),
 * storage type and quantisation parameters. Mirrors {@code cxr_edge.bundle.manifest.TensorSpec}.
 */
public final class TensorSpec {
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("shape", "dtype", "scale", "zero_point"));

    private final int[] shape;
    private final DType dtype;
    private final double scale;
    private final int zeroPoint;

    /**
     * @param shape tensor shape including the batch dimension
     * @param dtype storage type
     * @param scale quantisation scale (0 for float tensors)
     * @param zeroPoint quantisation zero point
     */
    public TensorSpec(int[] shape, DType dtype, double scale, int zeroPoint) {
        this.shape = shape.clone();
        this.dtype = dtype;
        this.scale = scale;
        this.zeroPoint = zeroPoint;
    }

    /** Parses {@code {"shape", "dtype", "scale", "zero_point"}}. */
    public static TensorSpec fromJson(JsonObject o) {
        o.requireKnownKeys(KEYS, "tensor spec");
        int[] shape = o.intArray("shape");
        DType dtype = DType.fromJson(o.string("dtype"), o.child("dtype"));
        return new TensorSpec(shape, dtype, o.number("scale", 0.0), o.integer("zero_point", 0));
    }

    /** Shape including the batch dimension (a copy). */
    public int[] shape() {
        return shape.clone();
    }

    /** Size of dimension {@code i}. */
    public int dim(int i) {
        return shape[i];
    }

    /** Number of dimensions. */
    public int rank() {
        return shape.length;
    }

    /** Storage type. */
    public DType dtype() {
        return dtype;
    }

    /** Quantisation scale (0 for float tensors). */
    public double scale() {
        return scale;
    }

    /** Quantisation zero point. */
    public int zeroPoint() {
        return zeroPoint;
    }

    /** Whether values are (de)quantised at the model boundary. */
    public boolean isQuantized() {
        return dtype != DType.FLOAT32;
    }

    /** Number of elements (product of the shape). */
    public int elementCount() {
        long n = 1;
        for (int d : shape) {
            n *= d;
        }
        if (n > Integer.MAX_VALUE || n < 0) {
            throw new ModelOutputException("tensor too large", "at most 2^31 elements", Arrays.toString(shape));
        }
        return (int) n;
    }

    /** Whether the shape equals {@code other}. */
    public boolean hasShape(int... other) {
        return Arrays.equals(shape, other);
    }

    /**
     * Whether this spec (from the manifest) describes the same tensor as {@code actual} (from the
     * model file): same shape and type, scale equal within a relative 1e-6, same zero point - the
     * rule of the Python engine's manifest check.
     */
    public boolean matches(TensorSpec actual) {
        return Arrays.equals(shape, actual.shape)
                && dtype == actual.dtype
                && Math.abs(scale - actual.scale) <= 1e-6 * Math.abs(actual.scale)
                && zeroPoint == actual.zeroPoint;
    }

    @Override
    public String toString() {
        return "TensorSpec(shape=" + Arrays.toString(shape) + ", dtype=" + dtype + ", scale=" + scale
                + ", zero_point=" + zeroPoint + ")";
    }
}
