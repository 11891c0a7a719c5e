package org.cxredge.core;

import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * One tensor in its storage type, as a LiteRT interpreter reads or writes it: float32 values in a
 * {@code float[]}, int8/uint8 values in a {@code byte[]} (uint8 read with {@code & 0xFF}).
 * {@link Quantization} converts between this and float values.
 */
public final class RawTensor {
    private final TensorSpec spec;
    private final float[] floats;
    private final byte[] bytes;

    private RawTensor(TensorSpec spec, float[] floats, byte[] bytes) {
        this.spec = spec;
        this.floats = floats;
        this.bytes = bytes;
        int n = floats != null ? floats.length : bytes.length;
        if (n != spec.elementCount()) {
            throw new ModelOutputException("tensor has the wrong number of elements",
                    spec.elementCount() + " for shape " + Arrays.toString(spec.shape()), String.valueOf(n));
        }
    }

    /** A float32 tensor (the array is not copied). */
    public static RawTensor ofFloats(TensorSpec spec, float[] values) {
        if (spec.dtype() != DType.FLOAT32) {
            throw new ModelOutputException("tensor type mismatch", spec.dtype().jsonName(), "float32 values");
        }
        return new RawTensor(spec, values, null);
    }

    /** An int8/uint8 tensor (the array is not copied). */
    public static RawTensor ofBytes(TensorSpec spec, byte[] values) {
        if (spec.dtype() == DType.FLOAT32) {
            throw new ModelOutputException("tensor type mismatch", "float32", "8-bit values");
        }
        return new RawTensor(spec, null, values);
    }

    /** The tensor's spec. */
    public TensorSpec spec() {
        return spec;
    }

    /** The float32 values (not a copy). */
    public float[] floats() {
        if (floats == null) {
            throw new IllegalStateException("not a float32 tensor: " + spec.dtype());
        }
        return floats;
    }

    /** The 8-bit values (not a copy). */
    public byte[] bytes() {
        if (bytes == null) {
            throw new IllegalStateException("not an 8-bit tensor: float32");
        }
        return bytes;
    }

    /** Bytes the tensor occupies. */
    public int byteSize() {
        return spec.elementCount() * spec.dtype().bytes();
    }

    /** A direct buffer in native byte order holding the tensor (what LiteRT reads). */
    public ByteBuffer toByteBuffer() {
        ByteBuffer out = ByteBuffer.allocateDirect(byteSize()).order(ByteOrder.nativeOrder());
        if (floats != null) {
            out.asFloatBuffer().put(floats);
        } else {
            out.put(bytes);
        }
        ((Buffer) out).rewind(); // Buffer's method: Java 9's covariant ByteBuffer.rewind is not on older Android
        return out;
    }

    /**
     * Reads a tensor of the given spec from a buffer LiteRT wrote (native byte order), from the
     * buffer's start.
     */
    public static RawTensor fromByteBuffer(TensorSpec spec, ByteBuffer buffer) {
        ByteBuffer b = buffer.duplicate().order(ByteOrder.nativeOrder());
        ((Buffer) b).rewind();
        int n = spec.elementCount();
        if (b.remaining() < n * spec.dtype().bytes()) {
            throw new ModelOutputException("output buffer too small", n * spec.dtype().bytes() + " bytes",
                    b.remaining() + " bytes");
        }
        if (spec.dtype() == DType.FLOAT32) {
            float[] values = new float[n];
            b.asFloatBuffer().get(values);
            return new RawTensor(spec, values, null);
        }
        byte[] values = new byte[n];
        b.get(values);
        return new RawTensor(spec, null, values);
    }
}
