package org.cxredge.core;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;

/**
 * SHA-256 digests of the files a manifest pins (model files, the self-test), to refuse a tampered or
 * incomplete bundle before it classifies anything (as the Python {@code Bundle.load} does).
 */
public final class Sha256 {
    private Sha256() {
    }

    /** Lower-case hex digest of {@code data}. */
    public static String hex(byte[] data) {
        try {
            byte[] d = MessageDigest.getInstance("SHA-256").digest(data);
            StringBuilder out = new StringBuilder(64);
            for (byte b : d) {
                out.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
            }
            return out.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is not available", e);
        }
    }

    /**
     * Checks a pinned file against its manifest entry.
     *
     * @throws BundleFormatException the digest differs
     */
    public static void verify(BundleFile model, byte[] data) {
        String actual = hex(data);
        if (!actual.equalsIgnoreCase(model.sha256())) {
            throw new BundleFormatException(null, "checksum mismatch for " + model.file()
                    + ": the bundle was modified or damaged", prefix(model.sha256()), prefix(actual));
        }
    }

    private static String prefix(String digest) {
        return (digest.length() > 16 ? digest.substring(0, 16) : digest) + "...";
    }
}
