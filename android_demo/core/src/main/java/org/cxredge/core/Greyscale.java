package org.cxredge.core;

/**
 * Colour pixels to the grey float image the pipeline takes, with the rules of the Python reader
 * ({@code cxr_edge.imaging.reader}) for 8-bit images:
 *
 * <ol>
 *   <li>alpha is composited on black: {@code round_half_even(c * (alpha / 255))} in float32 (an
 *       opaque pixel is unchanged);
 *   <li>an image whose red, green and blue are equal everywhere is grey stored as colour and is
 *       read as is;
 *   <li>a true colour image is converted with the ITU-R BT.601 luma weights in the 15-bit
 *       fixed-point form of current OpenCV ({@code cv2.COLOR_BGR2GRAY} on 8-bit images),
 *       {@code (9798 R + 19235 G + 3735 B + 16384) >> 15};
 *   <li>values become {@code v / 255} in float32.
 * </ol>
 *
 * <p>Pixels are Android/AWT ARGB ints, not premultiplied ({@code Bitmap.getPixels} and
 * {@code BufferedImage.getRGB} both return them so).
 */
public final class Greyscale {
    private Greyscale() {
    }

    /**
     * The grey image of {@code width x height} ARGB pixels.
     *
     * @param argb non-premultiplied ARGB pixels, row-major
     */
    public static FloatImage fromArgb(int[] argb, int width, int height) {
        if (argb.length != (long) width * height) {
            throw new InputImageException("pixel count does not match the size", width + "x" + height + " pixels",
                    argb.length + " pixels");
        }
        int[] rgb = composite(argb);
        boolean grey = isGrey(rgb);
        float[] out = new float[rgb.length];
        for (int i = 0; i < rgb.length; i++) {
            int p = rgb[i];
            int r = (p >> 16) & 0xFF;
            int g = (p >> 8) & 0xFF;
            int b = p & 0xFF;
            int v = grey ? r : luma(r, g, b);
            out[i] = v / 255.0f;
        }
        return new FloatImage(width, height, out);
    }

    /** Whether the pixels are colour (after compositing), i.e. the Python reader would flag a conversion. */
    public static boolean isColour(int[] argb) {
        return !isGrey(composite(argb));
    }

    /** OpenCV's 8-bit {@code BGR2GRAY}: BT.601 weights in 15-bit fixed point, rounded. */
    public static int luma(int r, int g, int b) {
        return (r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15;
    }

    /** Alpha composited on black; returns opaque RGB in the low 24 bits. */
    private static int[] composite(int[] argb) {
        int[] out = new int[argb.length];
        for (int i = 0; i < argb.length; i++) {
            int p = argb[i];
            int a = (p >>> 24) & 0xFF;
            if (a == 255) {
                out[i] = p & 0xFFFFFF;
                continue;
            }
            float alpha = a / 255.0f;
            int r = (int) Math.rint(((p >> 16) & 0xFF) * alpha);
            int g = (int) Math.rint(((p >> 8) & 0xFF) * alpha);
            int b = (int) Math.rint((p & 0xFF) * alpha);
            out[i] = (r << 16) | (g << 8) | b;
        }
        return out;
    }

    private static boolean isGrey(int[] rgb) {
        for (int p : rgb) {
            int r = (p >> 16) & 0xFF;
            if (r != ((p >> 8) & 0xFF) || r != (p & 0xFF)) {
                return false;
            }
        }
        return true;
    }
}
