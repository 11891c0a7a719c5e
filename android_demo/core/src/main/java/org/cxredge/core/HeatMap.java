package org.cxredge.core;

import java.util.List;

/**
 * Heat-map maths of {@code cxr_edge/cam.py}: the class activation map from the {@code features}
 * output and the dense weights stored in the bundle (exactly Grad-CAM for these models, see the
 * Python module), the average over members, and placement onto the source image.
 */
public final class HeatMap {
    private HeatMap() {
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
