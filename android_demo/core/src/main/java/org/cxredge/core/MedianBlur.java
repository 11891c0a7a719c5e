package org.cxredge.core;

import java.util.Arrays;

/**
 * Median filter of an 8-bit image with a square odd kernel and replicated borders: the result of
 * {@code cv2.medianBlur(u8, ksize)} (every OpenCV kernel for 8-bit images - sorting network or
 * histogram - returns the exact median of the window with {@code BORDER_REPLICATE}, so this
 * sliding-histogram implementation is bit-identical).
 */
public final class MedianBlur {
    private final int ksize;

    /**
     * @param ksize odd kernel size, at least 3
     */
    public MedianBlur(int ksize) {
        if (ksize < 3 || ksize % 2 == 0) {
            throw new IllegalArgumentException("median kernel must be odd and at least 3: " + ksize);
        }
        this.ksize = ksize;
    }

    /** The filtered image (a new image). */
    public ByteImage apply(ByteImage src) {
        int w = src.width();
        int h = src.height();
        int r = ksize / 2;
        int rank = (ksize * ksize) / 2; // 0-based rank of the median
        byte[] in = src.pixels();
        byte[] out = new byte[w * h];
        int[] hist = new int[256];
        for (int y = 0; y < h; y++) {
            Arrays.fill(hist, 0);
            for (int dy = -r; dy <= r; dy++) {
                int row = clamp(y + dy, h) * w;
                for (int dx = -r; dx <= r; dx++) {
                    hist[in[row + clamp(dx, w)] & 0xFF]++;
                }
            }
            out[y * w] = (byte) median(hist, rank);
            for (int x = 1; x < w; x++) {
                int leave = clamp(x - r - 1, w);
                int enter = clamp(x + r, w);
                for (int dy = -r; dy <= r; dy++) {
                    int row = clamp(y + dy, h) * w;
                    hist[in[row + leave] & 0xFF]--;
                    hist[in[row + enter] & 0xFF]++;
                }
                out[y * w + x] = (byte) median(hist, rank);
            }
        }
        return new ByteImage(w, h, out);
    }

    private static int median(int[] hist, int rank) {
        int seen = 0;
        for (int v = 0; v < 256; v++) {
            seen += hist[v];
            if (seen > rank) {
                return v;
            }
        }
        return 255;
    }

    private static int clamp(int v, int size) {
        return v < 0 ? 0 : (v >= size ? size - 1 : v);
    }
}
