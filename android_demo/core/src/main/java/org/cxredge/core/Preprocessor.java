package org.cxredge.core;

/**
 * The preprocessing of {@code cxr_edge/ops/preprocess.py}, step by step, for one {@link PreprocessSpec}:
 *
 * <ol>
 *   <li><b>crop</b> to the crop box (the lung box) when given, else remove {@code border} of each
 *       side;
 *   <li><b>resize</b> in float32 as {@code cv2.resize} does ({@link Resize#toSize}: area when
 *       shrinking, bilinear otherwise);
 *   <li>(training-only augmentation: not applicable);
 *   <li><b>quantise</b> to 8 bits: {@code floor(clip(x, 0, 1) * 255 + 0.5)} in float32;
 *   <li><b>equalise</b> the histogram ({@link Clahe#equalizeHist}) when {@code equalize}, then <b>CLAHE</b>
 *       ({@link Clahe}) when enabled;
 *   <li><b>median filter</b> ({@link MedianBlur}) when {@code median > 1};
 *   <li><b>normalise</b>: {@code u8 / 255} in float32, then for {@code standardize}
 *       {@code (x - mean) / max(std, 1e-6)} with numpy's float32 mean and standard deviation
 *       ({@link PairwiseSum}), so the input is bit-identical to Python's;
 *   <li>repeat to {@code channels}.
 * </ol>
 */
public final class Preprocessor {
    private static final double STD_FLOOR = 1e-6;

    private final PreprocessSpec spec;

    /** A preprocessor for one spec (the bundle's, or the segmenter's). */
    public Preprocessor(PreprocessSpec spec) {
        this.spec = spec;
    }

    /** The spec. */
    public PreprocessSpec spec() {
        return spec;
    }

    /**
     * Steps 1-8.
     *
     * @param image decoded image, values in [0, 1]
     * @param cropBox source-pixel box (e.g. the lung box), or null for the border crop
     * @throws InputImageException the crop box lies outside the image
     */
    public PreprocessedImage run(FloatImage image, CropBox cropBox) {
        CropBox region = region(image.width(), image.height(), cropBox);
        ByteImage u8 = enhance(quantize(Resize.toSize(image.crop(region), spec.width(), spec.height())));
        return new PreprocessedImage(region, u8, normalize(u8), spec.channels());
    }

    /** Steps 1-6: the 8-bit image every runtime must reproduce exactly. */
    public ByteImage u8(FloatImage image, CropBox cropBox) {
        CropBox region = region(image.width(), image.height(), cropBox);
        return enhance(quantize(Resize.toSize(image.crop(region), spec.width(), spec.height())));
    }

    /**
     * The region step 1 keeps ({@code crop_region}): the crop box, checked, or the border crop.
     *
     * @throws InputImageException the crop box lies outside the image
     */
    public CropBox region(int width, int height, CropBox cropBox) {
        if (cropBox != null) {
            return cropBox.checkInside(width, height);
        }
        return CropBox.border(width, height, spec.border()).checkInside(width, height);
    }

    /** Step 4: float [0, 1] to 8 bits with round-half-up, in float32 like numpy. */
    public static ByteImage quantize(FloatImage image) {
        float[] in = image.pixels();
        byte[] out = new byte[in.length];
        for (int i = 0; i < in.length; i++) {
            float v = Math.min(Math.max(in[i], 0.0f), 1.0f);
            out[i] = (byte) (int) Math.floor(v * 255.0f + 0.5f);
        }
        return new ByteImage(image.width(), image.height(), out);
    }

    /** Steps 4b-6: histogram equalisation, CLAHE and the median filter, as the spec asks. */
    public ByteImage enhance(ByteImage u8) {
        if (spec.equalize()) {
            u8 = Clahe.equalizeHist(u8);
        }
        if (spec.clahe()) {
            u8 = new Clahe(spec.claheClip(), spec.claheTiles(), spec.claheTiles()).apply(u8);
        }
        if (spec.median() > 1) {
            u8 = new MedianBlur(spec.median()).apply(u8);
        }
        return u8;
    }

    /** Steps 7-8: the float model input, {@code (H, W, channels)} row-major. */
    public float[] normalize(ByteImage u8) {
        byte[] p = u8.pixels();
        int n = p.length;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (p[i] & 0xFF) / 255.0f;
        }
        if (PreprocessSpec.STANDARDIZE.equals(spec.normalize())) {
            float mean = (float) ((double) PairwiseSum.sum(x) / n);
            float[] sq = new float[n];
            for (int i = 0; i < n; i++) {
                float d = x[i] - mean;
                sq[i] = d * d;
            }
            float variance = (float) ((double) PairwiseSum.sum(sq) / n);
            float std = (float) Math.sqrt(variance);
            float divisor = (float) Math.max((double) std, STD_FLOOR);
            for (int i = 0; i < n; i++) {
                x[i] = (x[i] - mean) / divisor;
            }
        }
        int c = spec.channels();
        if (c == 1) {
            return x;
        }
        float[] out = new float[n * c];
        for (int i = 0; i < n; i++) {
            for (int k = 0; k < c; k++) {
                out[i * c + k] = x[i];
            }
        }
        return out;
    }
}
