package org.cxredge.core;

/**
 * Contrast-limited adaptive histogram equalisation of an 8-bit image, reproducing OpenCV's
 * {@code cv::CLAHE} ({@code cv2.createCLAHE(clipLimit, (tiles, tiles)).apply}) exactly:
 *
 * <ol>
 *   <li>when the image size is not a multiple of the tile grid, the tiles are laid on a copy
 *       extended at the bottom and right by {@code BORDER_REFLECT_101}, by
 *       {@code tiles - size % tiles} pixels (OpenCV extends both sides whenever either needs it);
 *   <li>per tile: a 256-bin histogram, clipped at {@code max(1, (int)(clip * tileArea / 256))};
 *       the clipped count is spread evenly ({@code clipped / 256} per bin) and the residual one
 *       by one from bin 0 in steps of {@code max(256 / residual, 1)};
 *   <li>the tile's lookup table is {@code round_half_even(cumsum * (255f / tileArea))};
 *   <li>each pixel blends the lookup tables of the four nearest tile centres bilinearly, with
 *       float weights computed as OpenCV does, and rounds half to even.
 * </ol>
 */
public final class Clahe {
    private final double clipLimit;
    private final int tilesX;
    private final int tilesY;

    /**
     * @param clipLimit OpenCV clip limit (0 or less disables clipping)
     * @param tilesX tiles per row
     * @param tilesY tiles per column
     */
    public Clahe(double clipLimit, int tilesX, int tilesY) {
        if (tilesX < 1 || tilesY < 1) {
            throw new IllegalArgumentException("CLAHE needs at least one tile per side");
        }
        this.clipLimit = clipLimit;
        this.tilesX = tilesX;
        this.tilesY = tilesY;
    }

    /** The equalised image (a new image; the input is not changed). */
    public ByteImage apply(ByteImage src) {
        int w = src.width();
        int h = src.height();
        ByteImage forLut = src;
        if (w % tilesX != 0 || h % tilesY != 0) {
            forLut = extend(src, tilesX - (w % tilesX), tilesY - (h % tilesY));
        }
        int tileW = forLut.width() / tilesX;
        int tileH = forLut.height() / tilesY;
        int tileArea = tileW * tileH;
        float lutScale = 255.0f / tileArea;
        int clip = 0;
        if (clipLimit > 0.0) {
            clip = Math.max((int) (clipLimit * tileArea / 256), 1);
        }
        byte[][] luts = new byte[tilesX * tilesY][];
        for (int k = 0; k < luts.length; k++) {
            luts[k] = tileLut(forLut, (k % tilesX) * tileW, (k / tilesX) * tileH, tileW, tileH, clip, lutScale);
        }
        return interpolate(src, luts, tileW, tileH);
    }

    private static byte[] tileLut(ByteImage img, int x0, int y0, int tw, int th, int clip, float lutScale) {
        int[] hist = new int[256];
        byte[] p = img.pixels();
        int stride = img.width();
        for (int y = y0; y < y0 + th; y++) {
            int row = y * stride;
            for (int x = x0; x < x0 + tw; x++) {
                hist[p[row + x] & 0xFF]++;
            }
        }
        if (clip > 0) {
            int clipped = 0;
            for (int i = 0; i < 256; i++) {
                if (hist[i] > clip) {
                    clipped += hist[i] - clip;
                    hist[i] = clip;
                }
            }
            int batch = clipped / 256;
            int residual = clipped - batch * 256;
            for (int i = 0; i < 256; i++) {
                hist[i] += batch;
            }
            if (residual != 0) {
                int step = Math.max(256 / residual, 1);
                for (int i = 0; i < 256 && residual > 0; i += step, residual--) {
                    hist[i]++;
                }
            }
        }
        byte[] lut = new byte[256];
        int sum = 0;
        for (int i = 0; i < 256; i++) {
            sum += hist[i];
            lut[i] = (byte) roundToByte(sum * lutScale);
        }
        return lut;
    }

    private ByteImage interpolate(ByteImage src, byte[][] luts, int tileW, int tileH) {
        int w = src.width();
        int h = src.height();
        int[] ind1 = new int[w];
        int[] ind2 = new int[w];
        float[] xa = new float[w];
        float[] xa1 = new float[w];
        float invTw = 1.0f / tileW;
        for (int x = 0; x < w; x++) {
            float txf = x * invTw - 0.5f;
            int tx1 = (int) Math.floor(txf);
            int tx2 = tx1 + 1;
            xa[x] = txf - tx1;
            xa1[x] = 1.0f - xa[x];
            ind1[x] = Math.max(tx1, 0);
            ind2[x] = Math.min(tx2, tilesX - 1);
        }
        float invTh = 1.0f / tileH;
        byte[] in = src.pixels();
        byte[] out = new byte[w * h];
        for (int y = 0; y < h; y++) {
            float tyf = y * invTh - 0.5f;
            int ty1 = (int) Math.floor(tyf);
            int ty2 = ty1 + 1;
            float ya = tyf - ty1;
            float ya1 = 1.0f - ya;
            ty1 = Math.max(ty1, 0);
            ty2 = Math.min(ty2, tilesY - 1);
            int plane1 = ty1 * tilesX;
            int plane2 = ty2 * tilesX;
            int row = y * w;
            for (int x = 0; x < w; x++) {
                int v = in[row + x] & 0xFF;
                float l11 = luts[plane1 + ind1[x]][v] & 0xFF;
                float l12 = luts[plane1 + ind2[x]][v] & 0xFF;
                float l21 = luts[plane2 + ind1[x]][v] & 0xFF;
                float l22 = luts[plane2 + ind2[x]][v] & 0xFF;
                float res = (l11 * xa1[x] + l12 * xa[x]) * ya1 + (l21 * xa1[x] + l22 * xa[x]) * ya;
                out[row + x] = (byte) roundToByte(res);
            }
        }
        return new ByteImage(w, h, out);
    }

    /**
     * Global histogram equalisation, bit-identical to {@code cv2.equalizeHist}: the lookup table is
     * {@code saturate_cast<uchar>(cumsum * (255f / (total - first)))} in float32 from the first
     * occupied bin (which maps to 0); a constant image stays as it is.
     */
    public static ByteImage equalizeHist(ByteImage src) {
        byte[] p = src.pixels();
        int[] hist = new int[256];
        for (byte b : p) {
            hist[b & 0xFF]++;
        }
        int first = 0;
        while (first < 255 && hist[first] == 0) {
            first++;
        }
        int total = p.length;
        if (total == 0 || hist[first] == total) {
            return new ByteImage(src.width(), src.height(), p.clone());
        }
        float scale = 255.0f / (float) (total - hist[first]);
        byte[] lut = new byte[256];
        int sum = 0;
        for (int i = first + 1; i < 256; i++) {
            sum += hist[i];
            lut[i] = (byte) roundToByte(sum * scale);
        }
        byte[] out = new byte[total];
        for (int i = 0; i < total; i++) {
            out[i] = lut[p[i] & 0xFF];
        }
        return new ByteImage(src.width(), src.height(), out);
    }

    /** OpenCV's {@code saturate_cast<uchar>(float)}: round half to even, then clamp to 0..255. */
    static int roundToByte(float v) {
        double r = Math.rint(v);
        return r < 0 ? 0 : (r > 255 ? 255 : (int) r);
    }

    /** {@code cv::copyMakeBorder(src, 0, bottom, 0, right, BORDER_REFLECT_101)}. */
    static ByteImage extend(ByteImage src, int right, int bottom) {
        int w = src.width();
        int h = src.height();
        int nw = w + right;
        int nh = h + bottom;
        byte[] out = new byte[nw * nh];
        byte[] in = src.pixels();
        for (int y = 0; y < nh; y++) {
            int sy = reflect101(y, h);
            for (int x = 0; x < nw; x++) {
                out[y * nw + x] = in[sy * w + reflect101(x, w)];
            }
        }
        return new ByteImage(nw, nh, out);
    }

    /** OpenCV's {@code borderInterpolate(p, len, BORDER_REFLECT_101)} (gfedcb|abcdefgh|gfedcba). */
    static int reflect101(int p, int len) {
        if (p >= 0 && p < len) {
            return p;
        }
        if (len == 1) {
            return 0;
        }
        do {
            if (p < 0) {
                p = -p;
            } else {
                p = len - 1 - (p - len) - 1;
            }
        } while (p < 0 || p >= len);
        return p;
    }
}
