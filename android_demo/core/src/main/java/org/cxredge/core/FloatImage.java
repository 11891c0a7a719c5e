package org.cxredge.core;

/**
 * A single-channel float32 image, row-major: the decoded radiograph (values in [0, 1]), a resized
 * image, a mask probability map or a heat map.
 */
public final class FloatImage {
    private final int width;
    private final int height;
    private final float[] pixels;

    /**
     * Wraps pixels without copying.
     *
     * @param width columns
     * @param height rows
     * @param pixels {@code width * height} values, row-major
     */
    public FloatImage(int width, int height, float[] pixels) {
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
    public FloatImage(int width, int height) {
        this(width, height, new float[Math.multiplyExact(Math.max(width, 0), Math.max(height, 0))]);
    }

    /** Columns. */
    public int width() {
        return width;
    }

    /** Rows. */
    public int height() {
        return height;
    }

    /** The pixel array itself (row-major, not a copy). */
    public float[] pixels() {
        return pixels;
    }

    /** The value at column x, row y. */
    public float get(int x, int y) {
        return pixels[y * width + x];
    }

    /** The region {@code [x0, x1) x [y0, y1)} as a new image. */
    public FloatImage crop(CropBox box) {
        int w = box.width();
        int h = box.height();
        float[] out = new float[w * h];
        for (int y = 0; y < h; y++) {
            System.arraycopy(pixels, (box.y0() + y) * width + box.x0(), out, y * w, w);
        }
        return new FloatImage(w, h, out);
    }

    /** The largest value (negative infinity for none, NaN ignored). */
    public float max() {
        float m = Float.NEGATIVE_INFINITY;
        for (float v : pixels) {
            if (v > m) {
                m = v;
            }
        }
        return m;
    }
}
