package org.cxredge.core;

/**
 * The picture the app shows: the radiograph with the heat map in the JET colour map on top, blended
 * like {@code cxr_edge.ops.cam.overlay}: {@code out = base * (1 - w) + jet(heat) * w} with
 * {@code w = alpha * heat}, truncated to 8 bits. Display only (not part of the parity checks): the
 * JET colours come from the usual piecewise-linear formula, within one level of OpenCV's
 * {@code COLORMAP_JET} table.
 */
public final class HeatMapOverlay {
    /** Opacity of the heat map where it is 1 (the Python default). */
    public static final double DEFAULT_ALPHA = 0.4;

    private HeatMapOverlay() {
    }

    /**
     * Opaque ARGB pixels of the overlay.
     *
     * @param image the grey radiograph, values in [0, 1]
     * @param heat the heat map at the image's size ({@link Prediction#heatMap}), or null for none
     * @param alpha opacity where the heat map is 1
     */
    public static int[] argb(FloatImage image, FloatImage heat, double alpha) {
        if (heat != null && (heat.width() != image.width() || heat.height() != image.height())) {
            throw new InputImageException("heat map size differs from the image",
                    image.width() + "x" + image.height(), heat.width() + "x" + heat.height());
        }
        float[] px = image.pixels();
        int[] out = new int[px.length];
        for (int i = 0; i < px.length; i++) {
            int base = toByte(px[i]);
            if (heat == null) {
                out[i] = 0xFF000000 | (base << 16) | (base << 8) | base;
                continue;
            }
            float h = heat.pixels()[i];
            int level = toByte(h);
            float w = (float) (alpha * h);
            int r = blend(base, jet(level, 3), w);
            int g = blend(base, jet(level, 2), w);
            int b = blend(base, jet(level, 1), w);
            out[i] = 0xFF000000 | (r << 16) | (g << 8) | b;
        }
        return out;
    }

    /** JET colour component of an 8-bit level: {@code clip(1.5 - |4x - k|, 0, 1) * 255} (k: 3 red, 2 green, 1 blue). */
    public static int jet(int level, int k) {
        double x = level / 255.0;
        double v = Math.min(Math.max(1.5 - Math.abs(4 * x - k), 0.0), 1.0);
        return (int) Math.rint(v * 255);
    }

    private static int blend(int base, int colour, float w) {
        float v = base * (1 - w) + colour * w;
        return v <= 0 ? 0 : (v >= 255 ? 255 : (int) v);
    }

    private static int toByte(float v) {
        float c = Math.min(Math.max(v * 255f + 0.5f, 0f), 255f);
        return (int) c;
    }
}
