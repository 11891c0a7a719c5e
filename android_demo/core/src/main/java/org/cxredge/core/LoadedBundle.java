package org.cxredge.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A bundle read and checked as the Python {@code Bundle.load} does: the manifest's bytes are read once; with a
 * {@link TrustPolicy}, its signature is verified on exactly those bytes before anything else
 * ({@link UntrustedBundleException} when it is unsigned, signed by an untrusted key, or changed since signing);
 * then the manifest is parsed and checked ({@link BundleManifest}) and every file it pins (model files, the
 * self-test) must be present and match its SHA-256. Without a policy, bundles load as before, and
 * {@link #signatureStatus()} reports who claims to have signed (a malformed {@code signature.json} counts as
 * none, as in Python).
 *
 * <p>Where the files come from is the caller's ({@link Source}): a folder ({@link #load(Path, TrustPolicy)}),
 * the app's assets, a download.
 */
public final class LoadedBundle {
    /** Reads a bundle's files by plain name. */
    public interface Source {
        /**
         * The bytes of a file of the bundle, or null when it has none of that name.
         *
         * @throws IOException the file exists but cannot be read
         */
        byte[] read(String name) throws IOException;

        /** Where the bundle is, for messages. */
        String describe();
    }

    private final BundleManifest manifest;
    private final byte[] manifestBytes;
    private final Map<String, byte[]> files;
    private final BundleSignature signature;
    private final String trustedBy;

    private LoadedBundle(BundleManifest manifest, byte[] manifestBytes, Map<String, byte[]> files,
            BundleSignature signature, String trustedBy) {
        this.manifest = manifest;
        this.manifestBytes = manifestBytes;
        this.files = Collections.unmodifiableMap(files);
        this.signature = signature;
        this.trustedBy = trustedBy;
    }

    /**
     * Loads and checks the bundle in a folder.
     *
     * @param trust the device's trusted keys, or null for none (unsigned bundles load)
     * @throws BundleFormatException not a bundle, malformed manifest, a pinned file missing or changed
     * @throws UntrustedBundleException a policy is given and the bundle is not signed by one of its keys, or was
     *     changed after signing
     * @throws IOException a file cannot be read
     */
    public static LoadedBundle load(Path folder, TrustPolicy trust) throws IOException {
        return load(new Source() {
            @Override
            public byte[] read(String name) throws IOException {
                Path file = folder.resolve(name);
                return Files.isRegularFile(file) ? Files.readAllBytes(file) : null;
            }

            @Override
            public String describe() {
                return folder.toString();
            }
        }, trust);
    }

    /**
     * Loads and checks a bundle (see the class comment for the order of the checks).
     *
     * @param trust the device's trusted keys, or null for none (unsigned bundles load)
     * @throws BundleFormatException not a bundle, malformed manifest, a pinned file missing or changed
     * @throws UntrustedBundleException a policy is given and the bundle is not signed by one of its keys, or was
     *     changed after signing (also when this Java runtime cannot check Ed25519 signatures: a policy fails
     *     closed)
     * @throws IOException a file cannot be read
     */
    public static LoadedBundle load(Source source, TrustPolicy trust) throws IOException {
        byte[] raw = source.read(BundleManifest.FILE_NAME);
        if (raw == null) {
            throw new BundleFormatException(null, "not a bundle", "a folder holding " + BundleManifest.FILE_NAME,
                    source.describe());
        }
        byte[] signatureBytes = source.read(BundleSignature.FILE_NAME);
        BundleSignature signature;
        String trustedBy = null;
        if (trust != null) {
            signature = signatureBytes == null ? null : BundleSignature.parse(signatureBytes);
            try {
                trustedBy = trust.check(raw, signature);
            } catch (UnsupportedOperationException e) {
                throw new UntrustedBundleException("cannot verify the bundle signature: " + e.getMessage(),
                        "a Java runtime with Ed25519 (Java 15+)", System.getProperty("java.version"));
            }
        } else {
            try {
                signature = signatureBytes == null ? null : BundleSignature.parse(signatureBytes);
            } catch (UntrustedBundleException e) {
                signature = null; // no policy: a malformed signature is as good as none (as in Python)
            }
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(raw)).toString();
        } catch (CharacterCodingException e) {
            throw new BundleFormatException(null, "bundle manifest is not valid JSON", null, "bytes that are not UTF-8");
        }
        BundleManifest manifest = BundleManifest.parse(text);
        Map<String, byte[]> files = new LinkedHashMap<>();
        for (BundleFile entry : manifest.pinnedFiles()) {
            byte[] bytes = source.read(entry.file());
            if (bytes == null) {
                throw new BundleFormatException(null, "bundle is incomplete", "bundle file " + entry.file(), "missing");
            }
            Sha256.verify(entry, bytes);
            files.put(entry.file(), bytes);
        }
        return new LoadedBundle(manifest, raw, files, signature, trustedBy);
    }

    /** The parsed manifest. */
    public BundleManifest manifest() {
        return manifest;
    }

    /** The exact bytes of {@code manifest.json} (what the signature covers; a copy). */
    public byte[] manifestBytes() {
        return manifestBytes.clone();
    }

    /**
     * The verified bytes of a pinned file.
     *
     * @throws BundleFormatException the manifest pins no such file
     */
    public byte[] bytesOf(BundleFile entry) {
        byte[] bytes = files.get(entry.file());
        if (bytes == null) {
            throw new BundleFormatException(null, "file not in the bundle", "one of " + files.keySet(), entry.file());
        }
        return bytes;
    }

    /** The signature as {@code signature.json} claims it, or null (unsigned, or malformed without a policy). */
    public BundleSignature signature() {
        return signature;
    }

    /** The trusted key id that verified the signature, or null when no policy was applied. */
    public String trustedBy() {
        return trustedBy;
    }

    /**
     * Who signed the bundle, and whether this device checked it (Python's {@code cxr-edge bundle info} line):
     * {@code unsigned}, {@code signed by KEY_ID on DATE, verified against this device's trusted keys}, or
     * {@code signed by KEY_ID on DATE (not verified: no trusted keys set)}.
     */
    public String signatureStatus() {
        if (signature == null) {
            return "unsigned";
        }
        String who = "signed by " + signature.keyId() + " on " + signature.signedAt();
        return trustedBy != null ? who + ", verified against this device's trusted keys"
                : who + " (not verified: no trusted keys set)";
    }
}
