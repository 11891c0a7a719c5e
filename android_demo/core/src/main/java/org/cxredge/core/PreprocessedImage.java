package org.cxredge.core;

/**
 * What preprocessing made of one image: the source region it kept, the 8-bit image after CLAHE and
 * the median filter (which every runtime must reproduce exactly) and the normalised float model
 * input in {@code (H, W, C)} order.
 */
public final class PreprocessedImage {
    private final CropBox region;
    private final ByteImage u8;
    private final float[] input;
    private final int channels;

    PreprocessedImage(CropBox region, ByteImage u8, float[] input, int channels) {
        this.region = region;
        this.u8 = u8;
        this.input = input;
        this.channels = channels;
    }

    /** The source-image region step 1 kept (where heat maps are placed back). */
    public CropBox region() {
        return region;
    }

    /** The 8-bit image after steps 1-6. */
    public ByteImage u8() {
        return u8;
    }

    /** The model input, {@code H * W * C} floats in {@code (H, W, C)} order (not a copy). */
    public float[] input() {
        return input;
    }

    /** Channels of {@link #input()}. */
    public int channels() {
        return channels;
    }

    /**
     * The input for a model that takes {@code modelChannels} channels: the grey image is repeated
     * for a 3-channel model (what the Python engine does).
     *
     * @throws ModelOutputException the model takes fewer channels than the spec produces
     */
    public float[] inputFor(int modelChannels) {
        if (modelChannels == channels) {
            return input;
        }
        if (channels == 1 && modelChannels == 3) {
            float[] out = new float[input.length * 3];
            for (int i = 0; i < input.length; i++) {
                out[3 * i] = input[i];
                out[3 * i + 1] = input[i];
                out[3 * i + 2] = input[i];
            }
            return out;
        }
        throw new ModelOutputException("input tensor has the wrong shape",
                modelChannels + " channel(s) the model takes", channels + " channel(s) from preprocessing");
    }
}
