package org.cxredge.core;

import java.util.List;

/**
 * Heat-map maths of {@code cxr_edge/ops/cam.py}: the class activation map from the {@code features}
 * output and the dense weights stored in the bundle (exactly Grad-CAM for these models, see the
 * Python module), the average over members, placement onto the source image, and the share of the
 * heat map inside the predicted lung mask ({@link #lungFraction}).
 */
public final class HeatMap {
    /** Lung probability at and above which a segmenter pixel is lung ({@code cam.LUNG_THRESHOLD}). */
    public static final float LUNG_THRESHOLD = 0.5f;
    /** The flag of a prediction whose lung fraction is below the bundle's {@code min_fraction}. */
    public static final String FLAG_OUTSIDE_LUNGS = "evidence outside the lungs";

    private HeatMap() {
    }

    /**
     * Share of the heat map's mass inside the lung mask, in the classifier's crop frame
     * ({@code cam.lung_fraction}): the CAM resized bilinearly to the frame (the classifier input
     * size); frame pixel {@code (r, c)} has its centre at source pixel
     * {@code x = ((c + 0.5) * (x1 - x0)) / W + x0} (same for y) and is lung when the mask pixel
     * {@code floor(((x - sx0) * ws) / (sx1 - sx0))} (same for y) is set; centres outside the
     * segmenter's region are not lung. Double precision in the Python operation order.
     *
     * @param cam the averaged CAM over {@code region}
     * @param region the source pixels the classifiers saw
     * @param mask lung mask at the segmenter's resolution (non-zero = lung)
     * @param maskRegion the source pixels the segmenter saw
     * @param frameWidth W
     * @param frameHeight H
     * @return the fraction, or null when the heat map is all zero
     */
    public static Double lungFraction(FloatImage cam, CropBox region, ByteImage mask, CropBox maskRegion,
            int frameWidth, int frameHeight) {
        float[] heat = Resize.linear(cam, frameWidth, frameHeight).pixels();
        double total = 0.0;
        for (float v : heat) {
            total += v;
        }
        if (!(total > 0)) {
            return null;
        }
        int ws = mask.width();
        int hs = mask.height();
        byte[] m = mask.pixels();
        int[] cols = new int[frameWidth];
        for (int c = 0; c < frameWidth; c++) {
            double x = ((c + 0.5) * (region.x1() - region.x0())) / frameWidth + region.x0();
            double j = Math.floor(((x - maskRegion.x0()) * ws) / (maskRegion.x1() - maskRegion.x0()));
            cols[c] = j >= 0 && j < ws ? (int) j : -1;
        }
        double inside = 0.0;
        for (int r = 0; r < frameHeight; r++) {
            double y = ((r + 0.5) * (region.y1() - region.y0())) / frameHeight + region.y0();
            double i = Math.floor(((y - maskRegion.y0()) * hs) / (maskRegion.y1() - maskRegion.y0()));
            if (i < 0 || i >= hs) {
                continue;
            }
            int row = (int) i * ws;
            for (int c = 0; c < frameWidth; c++) {
                if (cols[c] >= 0 && m[row + cols[c]] != 0) {
                    inside += heat[r * frameWidth + c];
                }
            }
        }
        return Math.min(1.0, inside / total);
    }

    /**
     * Normalised CAM of one class: {@code relu(sum_k features[..., k] * weights[k][c])} divided by
     * its maximum (all zeros when nothing is positive).
     *
     * @param features {@code (h, w, K)} feature map, row-major with K fastest
     * @param h rows of the feature map
     * @param w columns of the feature map
     * @param weights {@code (K, n_classes)} dense weights
     * @param classIndex the class to explain
     * @return {@code (h, w)} map in [0, 1]
     */
    public static FloatImage classActivationMap(float[] features, int h, int w, double[][] weights, int classIndex) {
        int k = weights.length;
        if (features.length != h * w * k) {
            throw new ModelOutputException("features do not fit the CAM weights",
                    h + "x" + w + "x" + k + " values", features.length + " values");
        }
        double[] cam = new double[h * w];
        double peak = 0.0;
        for (int i = 0; i < h * w; i++) {
            double s = 0.0;
            int base = i * k;
            for (int c = 0; c < k; c++) {
                s += features[base + c] * weights[c][classIndex];
            }
            cam[i] = Math.max(s, 0.0);
            peak = Math.max(peak, cam[i]);
        }
        float[] out = new float[h * w];
        for (int i = 0; i < out.length; i++) {
            out[i] = (float) (peak > 0 ? cam[i] / peak : cam[i]);
        }
        return new FloatImage(w, h, out);
    }

    /**
     * Mean of the members' maps, each first resized (bilinear, as {@code cv2.INTER_LINEAR}) to the
     * finest member resolution; float32 accumulation in member order, like numpy.
     */
    public static FloatImage average(List<FloatImage> maps) {
        if (maps.isEmpty()) {
            throw new IllegalArgumentException("no heat maps to average");
        }
        int h = 0;
        int w = 0;
        for (FloatImage m : maps) {
            h = Math.max(h, m.height());
            w = Math.max(w, m.width());
        }
        float[] sum = null;
        for (FloatImage m : maps) {
            FloatImage same = (m.width() == w && m.height() == h) ? m : Resize.linear(m, w, h);
            if (sum == null) {
                sum = same.pixels().clone();
            } else {
                float[] p = same.pixels();
                for (int i = 0; i < sum.length; i++) {
                    sum[i] += p[i];
                }
            }
        }
        for (int i = 0; i < sum.length; i++) {
            sum[i] = (float) ((double) sum[i] / maps.size());
        }
        return new FloatImage(w, h, sum);
    }

    /**
     * The heat map in source-image pixels: resized (bilinear) onto the region the classifiers saw,
     * zero elsewhere ({@code cam.place}).
     *
     * @param cam the averaged map
     * @param imageWidth source image columns
     * @param imageHeight source image rows
     * @param region the preprocessing crop region
     */
    public static FloatImage place(FloatImage cam, int imageWidth, int imageHeight, CropBox region) {
        region.checkInside(imageWidth, imageHeight);
        FloatImage resized = Resize.linear(cam, region.width(), region.height());
        float[] canvas = new float[imageWidth * imageHeight];
        float[] r = resized.pixels();
        for (int y = 0; y < region.height(); y++) {
            System.arraycopy(r, y * region.width(), canvas, (region.y0() + y) * imageWidth + region.x0(),
                    region.width());
        }
        return new FloatImage(imageWidth, imageHeight, canvas);
    }
}
