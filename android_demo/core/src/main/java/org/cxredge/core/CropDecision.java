package org.cxredge.core;

/**
 * The crop decided for one image by {@link LungCrop}: the box, whether the lung mask passed the
 * quality gate ({@code lung}) or the border crop was used instead ({@code fallback}), why, and the
 * cleaned mask at the segmenter's resolution (0/255).
 */
public final class CropDecision {
    /** The mask passed the gate. */
    public static final String LUNG = "lung";
    /** The mask was implausible: the default border crop was used. */
    public static final String FALLBACK = "fallback";

    private final CropBox box;
    private final String status;
    private final String reason;
    private final ByteImage mask;

    CropDecision(CropBox box, String status, String reason, ByteImage mask) {
        this.box = box;
        this.status = status;
        this.reason = reason;
        this.mask = mask;
    }

    /** The box in source-image pixels. */
    public CropBox box() {
        return box;
    }

    /** {@link #LUNG} or {@link #FALLBACK}. */
    public String status() {
        return status;
    }

    /** Why the fallback was used ("" for {@link #LUNG}); the same text as the Python runtime's. */
    public String reason() {
        return reason;
    }

    /** The cleaned binary mask (0/255) at the segmenter's resolution. */
    public ByteImage mask() {
        return mask;
    }
}
