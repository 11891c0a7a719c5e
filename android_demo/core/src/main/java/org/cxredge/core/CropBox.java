package org.cxredge.core;

/** A region of the source image in pixels: {@code (x0, y0, x1, y1)}, end exclusive. */
public final class CropBox {
    private final int x0;
    private final int y0;
    private final int x1;
    private final int y1;

    /** A box; its coordinates are checked against an image by {@link #checkInside}. */
    public CropBox(int x0, int y0, int x1, int y1) {
        this.x0 = x0;
        this.y0 = y0;
        this.x1 = x1;
        this.y1 = y1;
    }

    /**
     * The default crop: {@code border} of each side removed, rounding like Python's
     * {@code round} (half to even).
     */
    public static CropBox border(int width, int height, double border) {
        int dy = (int) Math.rint(height * border);
        int dx = (int) Math.rint(width * border);
        return new CropBox(dx, dy, width - dx, height - dy);
    }

    /**
     * Refuses a box that is empty or leaves a {@code width x height} image.
     *
     * @throws InputImageException the box is outside the image
     */
    public CropBox checkInside(int width, int height) {
        if (!(0 <= x0 && x0 < x1 && x1 <= width && 0 <= y0 && y0 < y1 && y1 <= height)) {
            throw new InputImageException("crop box outside the image", "inside " + width + "x" + height,
                    toString());
        }
        return this;
    }

    /** Left edge (inclusive). */
    public int x0() {
        return x0;
    }

    /** Top edge (inclusive). */
    public int y0() {
        return y0;
    }

    /** Right edge (exclusive). */
    public int x1() {
        return x1;
    }

    /** Bottom edge (exclusive). */
    public int y1() {
        return y1;
    }

    /** {@code x1 - x0}. */
    public int width() {
        return x1 - x0;
    }

    /** {@code y1 - y0}. */
    public int height() {
        return y1 - y0;
    }

    @Override
    public boolean equals(Object other) {
        if (!(other instanceof CropBox)) {
            return false;
        }
        CropBox b = (CropBox) other;
        return x0 == b.x0 && y0 == b.y0 && x1 == b.x1 && y1 == b.y1;
    }

    @Override
    public int hashCode() {
        return ((x0 * 31 + y0) * 31 + x1) * 31 + y1;
    }

    @Override
    public String toString() {
        return "(" + x0 + ", " + y0 + ", " + x1 + ", " + y1 + ")";
    }
}
