package org.cxredge.core;

/**
 * A file of a bundle that its manifest pins by SHA-256 (the classifiers, the segmenter, the self-test), checked
 * on every load ({@link Sha256#verify}, {@link LoadedBundle}) as the Python {@code Bundle.load} does.
 */
public interface BundleFile {
    /** Plain file name inside the bundle folder. */
    String file();

    /** Hex sha256 digest of the file. */
    String sha256();
}
