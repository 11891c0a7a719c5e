package org.cxredge.core;

/**
 * A single-channel 8-bit image, row-major, values 0..255 stored in a {@code byte[]} (read them
 * with {@link #get}): the quantised image before and after CLAHE and the median filter, and the
 * cleaned lung mask.
 */
public final class ByteImage {
    private final int width;
    private final int height;
    private final byte[] pixels;

    /**
     * Wraps pixels without copying.
     *
     * @param width columns
     * @param height rows
     * @param pixels {@code width * height} unsigned bytes, row-major
     */
    public ByteImage(int width, int height, byte[] pixels) {
        if (width <= 0 || height <= 0 || pixels.length != (long) width * height) {
            throw new InputImageException("image has no pixels or the wrong number of them",
                    "positive width and height and width*height values",
                    width + "x" + height + " with " + pixels.length + " values");
        }
        this.width = width;
        this.height = height;
        this.pixels = pixels;
    }

    /** A zero image. */
    public ByteImage(int width, int height) {
        this(width, height, new byte[Math.multiplyExact(Math.max(width, 0), Math.max(height, 0))]);
    }

    /** Columns. */
    public int width() {
        return width;
    }

    /** Rows. */
    public int height() {
        return height;
    }

    /** The pixel array itself (not a copy); values are unsigned. */
    public byte[] pixels() {
        return pixels;
    }

    /** The value (0..255) at column x, row y. */
    public int get(int x, int y) {
        return pixels[y * width + x] & 0xFF;
    }

    /** The value (0..255) at flat index i. */
    public int get(int i) {
        return pixels[i] & 0xFF;
    }
}
