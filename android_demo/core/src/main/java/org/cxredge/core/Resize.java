package org.cxredge.core;

import java.util.Arrays;

/**
 * Float image resizing that reproduces {@code cv2.resize} on {@code float32} images operation by
 * operation, so results are bit-identical to the Python runtime's: {@code INTER_AREA} (OpenCV's
 * fractional-scale kernel and its integer-scale "fast" kernel) and {@code INTER_LINEAR} (the Intel
 * IPP kernel OpenCV's x86-64 wheels use for float images, and OpenCV's own kernel).
 *
 * <p>All arithmetic is float32 as in OpenCV ({@code WT = float}), coordinates are computed in
 * double and rounded to float where the reference does, and sums are accumulated in its order.
 * Java float arithmetic is strict IEEE 754 and never contracted into FMA; where the reference
 * uses FMA, {@link Fma} does it explicitly.
 */
public final class Resize {
    private Resize() {
    }

    /**
     * Preprocessing step 2 ({@code cxr_edge.ops.preprocess.resize}): area averaging when shrinking (or
     * keeping) both sides, bilinear otherwise.
     */
    public static FloatImage toSize(FloatImage src, int width, int height) {
        boolean shrinking = src.height() >= height && src.width() >= width;
        return shrinking ? area(src, width, height) : linear(src, width, height);
    }

    /**
     * {@code cv2.resize(src, (width, height), interpolation=cv2.INTER_AREA)} for a target no larger
     * than the source on both sides.
     */
    public static FloatImage area(FloatImage src, int width, int height) {
        int sw = src.width();
        int sh = src.height();
        if (width > sw || height > sh) {
            throw new IllegalArgumentException("area resize only shrinks: " + sw + "x" + sh + " -> " + width + "x"
                    + height);
        }
        if (width == sw && height == sh) {
            return new FloatImage(sw, sh, src.pixels().clone());
        }
        double scaleX = 1.0 / ((double) width / sw);
        double scaleY = 1.0 / ((double) height / sh);
        int iscaleX = (int) Math.rint(scaleX);
        int iscaleY = (int) Math.rint(scaleY);
        boolean fast = Math.abs(scaleX - iscaleX) < Math.ulp(1.0) && Math.abs(scaleY - iscaleY) < Math.ulp(1.0);
        return fast ? areaFast(src, width, height, iscaleX, iscaleY) : areaGeneral(src, width, height, scaleX, scaleY);
    }

    /** One entry of OpenCV's area table: destination index, source index, weight. */
    private static final class AreaTable {
        final int[] di;
        final int[] si;
        final float[] alpha;
        final int size;

        AreaTable(int ssize, int dsize, double scale) {
            int cap = ssize * 2 + dsize;
            int[] d = new int[cap];
            int[] s = new int[cap];
            float[] a = new float[cap];
            int k = 0;
            for (int dx = 0; dx < dsize; dx++) {
                double fsx1 = dx * scale;
                double fsx2 = fsx1 + scale;
                double cellWidth = Math.min(scale, ssize - fsx1);
                int sx1 = (int) Math.ceil(fsx1);
                int sx2 = (int) Math.floor(fsx2);
                sx2 = Math.min(sx2, ssize - 1);
                sx1 = Math.min(sx1, sx2);
                if (sx1 - fsx1 > 1e-3) {
                    d[k] = dx;
                    s[k] = sx1 - 1;
                    a[k++] = (float) ((sx1 - fsx1) / cellWidth);
                }
                for (int sx = sx1; sx < sx2; sx++) {
                    d[k] = dx;
                    s[k] = sx;
                    a[k++] = (float) (1.0 / cellWidth);
                }
                if (fsx2 - sx2 > 1e-3) {
                    d[k] = dx;
                    s[k] = sx2;
                    a[k++] = (float) (Math.min(Math.min(fsx2 - sx2, 1.0), cellWidth) / cellWidth);
                }
            }
            di = d;
            si = s;
            alpha = a;
            size = k;
        }
    }

    /** OpenCV's {@code computeResizeAreaTab} + {@code ResizeArea_Invoker} (fractional scales). */
    private static FloatImage areaGeneral(FloatImage src, int width, int height, double scaleX, double scaleY) {
        int sw = src.width();
        float[] s = src.pixels();
        AreaTable xtab = new AreaTable(sw, width, scaleX);
        AreaTable ytab = new AreaTable(src.height(), height, scaleY);
        float[] out = new float[width * height];
        float[] buf = new float[width];
        float[] sum = new float[width];
        int prevDy = ytab.di[0];
        for (int j = 0; j < ytab.size; j++) {
            float beta = ytab.alpha[j];
            int dy = ytab.di[j];
            int row = ytab.si[j] * sw;
            Arrays.fill(buf, 0f);
            for (int k = 0; k < xtab.size; k++) {
                buf[xtab.di[k]] += s[row + xtab.si[k]] * xtab.alpha[k];
            }
            if (dy != prevDy) {
                System.arraycopy(sum, 0, out, prevDy * width, width);
                for (int dx = 0; dx < width; dx++) {
                    sum[dx] = beta * buf[dx];
                }
                prevDy = dy;
            } else {
                for (int dx = 0; dx < width; dx++) {
                    sum[dx] += beta * buf[dx];
                }
            }
        }
        System.arraycopy(sum, 0, out, prevDy * width, width);
        return new FloatImage(width, height, out);
    }

    /**
     * OpenCV's {@code resizeAreaFast_Invoker} (integer scales). The 2x2 case follows the SIMD
     * kernel {@code ((a + b) + (c + d)) * 0.25} for blocks of 4 output pixels and the scalar loop
     * {@code (((a + b) + c) + d) * 0.25} for the remainder, as a 128-bit (SSE/NEON) build does.
     */
    private static FloatImage areaFast(FloatImage src, int width, int height, int scaleX, int scaleY) {
        int sw = src.width();
        int sh = src.height();
        float[] s = src.pixels();
        int area = scaleX * scaleY;
        float scale = 1.0f / area;
        int dwidth1 = sw / scaleX;
        int[] ofs = new int[area];
        for (int sy = 0, k = 0; sy < scaleY; sy++) {
            for (int sx = 0; sx < scaleX; sx++) {
                ofs[k++] = sy * sw + sx;
            }
        }
        boolean simd2x2 = scaleX == 2 && scaleY == 2;
        final int lanes = 4;
        float[] out = new float[width * height];
        for (int dy = 0; dy < height; dy++) {
            int o = dy * width;
            int sy0 = dy * scaleY;
            int w = sy0 + scaleY <= sh ? dwidth1 : 0;
            if (sy0 >= sh) {
                continue; // stays 0
            }
            int dx = 0;
            int row = sy0 * sw;
            if (simd2x2) {
                int blocks = (w / lanes) * lanes; // the SIMD loop: dx <= w - lanes, step lanes
                for (; dx < blocks; dx++) {
                    int p = row + 2 * dx;
                    out[o + dx] = ((s[p] + s[p + 1]) + (s[p + sw] + s[p + sw + 1])) * 0.25f;
                }
            }
            for (; dx < w; dx++) {
                int p = row + dx * scaleX;
                float sum = 0f;
                int k = 0;
                for (; k <= area - 4; k += 4) {
                    sum += s[p + ofs[k]] + s[p + ofs[k + 1]] + s[p + ofs[k + 2]] + s[p + ofs[k + 3]];
                }
                for (; k < area; k++) {
                    sum += s[p + ofs[k]];
                }
                out[o + dx] = sum * scale;
            }
            for (; dx < width; dx++) {
                float sum = 0f;
                int count = 0;
                int sx0 = dx * scaleX;
                if (sx0 >= sw) {
                    out[o + dx] = 0f;
                }
                for (int sy = 0; sy < scaleY; sy++) {
                    if (sy0 + sy >= sh) {
                        break;
                    }
                    int r = (sy0 + sy) * sw;
                    for (int sx = 0; sx < scaleX; sx++) {
                        if (sx0 + sx >= sw) {
                            break;
                        }
                        sum += s[r + sx0 + sx];
                        count++;
                    }
                }
                out[o + dx] = sum / count;
            }
        }
        return new FloatImage(width, height, out);
    }

    /**
     * {@code cv2.resize(src, (width, height), interpolation=cv2.INTER_LINEAR)} on a float image as
     * the Python runtime computes it: OpenCV's x86-64 wheels hand float bilinear resizes to Intel
     * IPP, whose kernel takes source coordinates {@code (d + 0.5) * src / dst - 0.5} in double,
     * rounds the fractions to float and interpolates with fused multiply-adds,
     * {@code fma(b - a, f, a)}, first along rows, then along columns, with replicated borders.
     * A source one pixel wide or high goes to OpenCV's own kernel, as in OpenCV. See
     * {@link #linearOpenCv} for that kernel, which builds without IPP use for every size (and
     * which turns an exact 2x shrink into the area kernel; IPP interpolates it).
     */
    public static FloatImage linear(FloatImage src, int width, int height) {
        int sw = src.width();
        int sh = src.height();
        if (width == sw && height == sh) {
            return new FloatImage(sw, sh, src.pixels().clone());
        }
        if (sw < 2 || sh < 2) {
            return linearOpenCv(src, width, height); // IPP is not used for a one-pixel-wide source
        }
        int[] x0 = new int[width];
        int[] x1 = new int[width];
        float[] fx = new float[width];
        coordinates(sw, width, x0, x1, fx);
        int[] y0 = new int[height];
        int[] y1 = new int[height];
        float[] fy = new float[height];
        coordinates(sh, height, y0, y1, fy);
        float[] s = src.pixels();
        float[] rows = new float[sh * width]; // each source row interpolated horizontally, on demand
        boolean[] done = new boolean[sh];
        float[] out = new float[width * height];
        for (int dy = 0; dy < height; dy++) {
            int r0 = y0[dy];
            int r1 = y1[dy];
            interpolateRow(s, sw, r0, x0, x1, fx, rows, done);
            interpolateRow(s, sw, r1, x0, x1, fx, rows, done);
            float f = fy[dy];
            int o = dy * width;
            for (int dx = 0; dx < width; dx++) {
                float t = rows[r0 * width + dx];
                float u = rows[r1 * width + dx];
                out[o + dx] = Fma.fma(u - t, f, t);
            }
        }
        return new FloatImage(width, height, out);
    }

    /** Interpolates source row {@code r} horizontally into {@code rows}, once. */
    private static void interpolateRow(float[] s, int sw, int r, int[] x0, int[] x1, float[] fx, float[] rows,
            boolean[] done) {
        if (done[r]) {
            return;
        }
        int width = fx.length;
        int row = r * sw;
        for (int dx = 0; dx < width; dx++) {
            float a = s[row + x0[dx]];
            float b = s[row + x1[dx]];
            rows[r * width + dx] = Fma.fma(b - a, fx[dx], a);
        }
        done[r] = true;
    }

    /** IPP's source coordinates: indices of the two neighbours (replicated at borders) and fraction. */
    private static void coordinates(int ssize, int dsize, int[] i0, int[] i1, float[] frac) {
        double scale = (double) ssize / dsize;
        for (int d = 0; d < dsize; d++) {
            double f = (d + 0.5) * scale - 0.5;
            int i = (int) Math.floor(f);
            frac[d] = (float) (f - i);
            i0[d] = clip(i, ssize);
            i1[d] = clip(i + 1, ssize);
        }
    }

    private static boolean isExactHalf(int ssize, int dsize) {
        return Math.abs(1.0 / ((double) dsize / ssize) - 2.0) < Math.ulp(1.0);
    }

    /**
     * OpenCV's own {@code INTER_LINEAR} kernel for float images ({@code resizeGeneric_} with
     * {@code HResizeLinear}/{@code VResizeLinear}), bit-identical to {@code cv2.resize} in builds
     * without IPP (e.g. ARM wheels) or with {@code cv2.ipp.setUseIPP(False)}: float coordinates,
     * {@code a * w0 + b * w1} without FMA, clamped rows with unclamped vertical weights.
     */
    public static FloatImage linearOpenCv(FloatImage src, int width, int height) {
        int sw = src.width();
        int sh = src.height();
        if (width == sw && height == sh) {
            return new FloatImage(sw, sh, src.pixels().clone());
        }
        if (isExactHalf(sw, width) && isExactHalf(sh, height)) {
            return area(src, width, height);
        }
        double scaleX = 1.0 / ((double) width / sw);
        double scaleY = 1.0 / ((double) height / sh);
        // Horizontal table: source index and weights; beyond xmax the last column is copied.
        int[] xofs = new int[width];
        float[] a0 = new float[width];
        float[] a1 = new float[width];
        int xmax = width;
        for (int dx = 0; dx < width; dx++) {
            float fx = (float) ((dx + 0.5) * scaleX - 0.5);
            int sx = (int) Math.floor(fx);
            fx -= sx;
            if (sx < 0) {
                fx = 0f;
                sx = 0;
            }
            if (sx + 1 >= sw) {
                xmax = Math.min(xmax, dx);
                if (sx >= sw - 1) {
                    fx = 0f;
                    sx = sw - 1;
                }
            }
            xofs[dx] = sx;
            a0[dx] = 1.0f - fx;
            a1[dx] = fx;
        }
        float[] s = src.pixels();
        float[] out = new float[width * height];
        float[] row0 = new float[width];
        float[] row1 = new float[width];
        for (int dy = 0; dy < height; dy++) {
            float fy = (float) ((dy + 0.5) * scaleY - 0.5);
            int sy = (int) Math.floor(fy);
            fy -= sy;
            float b0 = 1.0f - fy;
            float b1 = fy;
            horizontal(s, clip(sy, sh) * sw, xofs, a0, a1, xmax, row0);
            horizontal(s, clip(sy + 1, sh) * sw, xofs, a0, a1, xmax, row1);
            int o = dy * width;
            for (int dx = 0; dx < width; dx++) {
                out[o + dx] = row0[dx] * b0 + row1[dx] * b1;
            }
        }
        return new FloatImage(width, height, out);
    }

    private static void horizontal(float[] s, int row, int[] xofs, float[] a0, float[] a1, int xmax, float[] dst) {
        int dx = 0;
        for (; dx < xmax; dx++) {
            int p = row + xofs[dx];
            dst[dx] = s[p] * a0[dx] + s[p + 1] * a1[dx];
        }
        for (; dx < dst.length; dx++) {
            dst[dx] = s[row + xofs[dx]];
        }
    }

    private static int clip(int v, int size) {
        return v < 0 ? 0 : (v < size ? v : size - 1);
    }
}
