package org.cxredge.core;

/**
 * Lung probabilities to a crop box, with the quality gate and fallback of
 * {@code cxr_edge/ops/lungcrop.py}:
 *
 * <ol>
 *   <li>threshold the probabilities ({@code p >= threshold}, compared in float32 like numpy);
 *   <li>keep the two largest 8-connected components and fill holes (background not reachable
 *       from the border through 4-connected background, as {@code cv2.floodFill});
 *   <li>gate: no lung, area outside {@code [min_area, max_area]}, more than
 *       {@code max_components} components of at least 1% of the image, or a box aspect outside
 *       {@code [min_aspect, max_aspect]} each fall back to the border crop, with the same reason
 *       text as Python;
 *   <li>otherwise the bounding box widened by {@code margin} on each side, scaled to the source
 *       image and rounded outwards.
 * </ol>
 *
 * <p>Ties: among components of the same area the later one (in raster order of first pixels, i.e.
 * the higher label) ranks first, as in Python ({@code np.argsort(areas, kind="stable")[::-1]}).
 */
public final class LungCrop {
    private static final double SIGNIFICANT = 0.01;

    private final CropSpec spec;

    /** A lung crop with the bundle's crop parameters. */
    public LungCrop(CropSpec spec) {
        this.spec = spec;
    }

    /**
     * Decides the crop of one image.
     *
     * @param prob lung probabilities at the segmenter's resolution
     * @param imageWidth columns of the source image the box refers to
     * @param imageHeight rows of the source image
     */
    public CropDecision decide(FloatImage prob, int imageWidth, int imageHeight) {
        int w = prob.width();
        int h = prob.height();
        int[] significant = new int[1];
        ByteImage mask = cleanMask(prob, (float) spec.threshold(), significant);
        byte[] m = mask.pixels();
        int kept = 0;
        int x0 = Integer.MAX_VALUE;
        int y0 = Integer.MAX_VALUE;
        int x1 = -1;
        int y1 = -1;
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                if (m[y * w + x] != 0) {
                    kept++;
                    x0 = Math.min(x0, x);
                    y0 = Math.min(y0, y);
                    x1 = Math.max(x1, x + 1);
                    y1 = Math.max(y1, y + 1);
                }
            }
        }
        double area = (double) kept / m.length;
        if (area == 0) {
            return fallback("no lung found", mask, imageWidth, imageHeight);
        }
        if (!(spec.minArea() <= area && area <= spec.maxArea())) {
            return fallback("lung area " + PythonFormat.fixed(area, 2) + " of the image outside ["
                    + PythonFormat.repr(spec.minArea()) + ", " + PythonFormat.repr(spec.maxArea()) + "]",
                    mask, imageWidth, imageHeight);
        }
        if (significant[0] > spec.maxComponents()) {
            return fallback("mask fragmented into " + significant[0] + " pieces", mask, imageWidth, imageHeight);
        }
        double aspect = (double) (x1 - x0) / (y1 - y0);
        if (!(spec.minAspect() <= aspect && aspect <= spec.maxAspect())) {
            return fallback("box width/height " + PythonFormat.fixed(aspect, 2) + " outside ["
                    + PythonFormat.repr(spec.minAspect()) + ", " + PythonFormat.repr(spec.maxAspect()) + "]",
                    mask, imageWidth, imageHeight);
        }
        double mx = spec.margin() * (x1 - x0);
        double my = spec.margin() * (y1 - y0);
        double sx = (double) imageWidth / w;
        double sy = (double) imageHeight / h;
        CropBox box = new CropBox(
                Math.max(0, (int) Math.floor((x0 - mx) * sx)),
                Math.max(0, (int) Math.floor((y0 - my) * sy)),
                Math.min(imageWidth, (int) Math.ceil((x1 + mx) * sx)),
                Math.min(imageHeight, (int) Math.ceil((y1 + my) * sy)));
        return new CropDecision(box, CropDecision.LUNG, "", mask);
    }

    private CropDecision fallback(String reason, ByteImage mask, int width, int height) {
        return new CropDecision(CropBox.border(width, height, spec.fallbackBorder()), CropDecision.FALLBACK, reason,
                mask);
    }

    /**
     * Thresholds, keeps the two largest components, fills holes.
     *
     * @param significantOut receives the number of components of at least 1% of the image
     * @return the cleaned mask, 0/255
     */
    static ByteImage cleanMask(FloatImage prob, float threshold, int[] significantOut) {
        int w = prob.width();
        int h = prob.height();
        float[] p = prob.pixels();
        boolean[] fg = new boolean[p.length];
        for (int i = 0; i < p.length; i++) {
            fg[i] = p[i] >= threshold;
        }
        ConnectedComponents cc = ConnectedComponents.of(fg, w, h);
        int significant = 0;
        for (int label = 1; label <= cc.count(); label++) {
            if (cc.area(label) >= SIGNIFICANT * p.length) {
                significant++;
            }
        }
        significantOut[0] = significant;
        // Largest first; among equal areas the higher label first (numpy argsort reversed).
        int first = 0;
        int second = 0;
        for (int label = 1; label <= cc.count(); label++) {
            int a = cc.area(label);
            if (first == 0 || a >= cc.area(first)) {
                second = first;
                first = label;
            } else if (second == 0 || a >= cc.area(second)) {
                second = label;
            }
        }
        int[] labels = cc.labels();
        byte[] mask = new byte[p.length];
        for (int i = 0; i < p.length; i++) {
            int l = labels[i];
            if (l != 0 && (l == first || l == second)) {
                mask[i] = (byte) 255;
            }
        }
        fillHoles(mask, w, h);
        return new ByteImage(w, h, mask);
    }

    /** Sets to 255 every background pixel that 4-connected background does not link to the border. */
    private static void fillHoles(byte[] mask, int w, int h) {
        boolean[] outside = new boolean[mask.length];
        int[] stack = new int[mask.length];
        int top = 0;
        for (int x = 0; x < w; x++) {
            top = seed(mask, outside, stack, top, x);
            top = seed(mask, outside, stack, top, (h - 1) * w + x);
        }
        for (int y = 0; y < h; y++) {
            top = seed(mask, outside, stack, top, y * w);
            top = seed(mask, outside, stack, top, y * w + w - 1);
        }
        while (top > 0) {
            int q = stack[--top];
            int x = q % w;
            int y = q / w;
            if (x > 0) {
                top = seed(mask, outside, stack, top, q - 1);
            }
            if (x < w - 1) {
                top = seed(mask, outside, stack, top, q + 1);
            }
            if (y > 0) {
                top = seed(mask, outside, stack, top, q - w);
            }
            if (y < h - 1) {
                top = seed(mask, outside, stack, top, q + w);
            }
        }
        for (int i = 0; i < mask.length; i++) {
            if (mask[i] == 0 && !outside[i]) {
                mask[i] = (byte) 255;
            }
        }
    }

    private static int seed(byte[] mask, boolean[] outside, int[] stack, int top, int q) {
        if (mask[q] == 0 && !outside[q]) {
            outside[q] = true;
            stack[top++] = q;
        }
        return top;
    }
}
