package org.cxredge.core;

/** Storage type of a model tensor, as named in the manifest. */
public enum DType {
    /** 32-bit IEEE float. */
    FLOAT32("float32", 0, 0),
    /** Signed 8-bit integer, range -128..127. */
    INT8("int8", -128, 127),
    /** Unsigned 8-bit integer, range 0..255. */
    UINT8("uint8", 0, 255);

    private final String jsonName;
    private final int min;
    private final int max;

    DType(String jsonName, int min, int max) {
        this.jsonName = jsonName;
        this.min = min;
        this.max = max;
    }

    /** The manifest's spelling ({@code float32}, {@code int8}, {@code uint8}). */
    public String jsonName() {
        return jsonName;
    }

    /** Smallest stored value of an integer type (0 for float32). */
    public int min() {
        return min;
    }

    /** Largest stored value of an integer type (0 for float32). */
    public int max() {
        return max;
    }

    /** Bytes per element. */
    public int bytes() {
        return this == FLOAT32 ? 4 : 1;
    }

    /**
     * The type named {@code name} in a manifest.
     *
     * @throws BundleFormatException unknown name
     */
    public static DType fromJson(String name, String field) {
        for (DType t : values()) {
            if (t.jsonName.equals(name)) {
                return t;
            }
        }
        throw new BundleFormatException(field, "invalid value", "one of ['float32', 'int8', 'uint8']", "\"" + name + "\"");
    }

    @Override
    public String toString() {
        return jsonName;
    }
}
