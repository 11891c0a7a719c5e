package org.cxredge.core;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * The public keys a device accepts bundles from: Python's {@code TrustPolicy}
 * ({@code cxr_edge.bundle.signature}). With a policy, {@link LoadedBundle#load} refuses a bundle that is
 * unsigned, signed by a key not in the policy, or whose {@code manifest.json} changed after signing (its other
 * files are pinned by their SHA-256 in the manifest, checked on every load); without one, bundles load as
 * before and {@link LoadedBundle#signatureStatus()} says who claims to have signed.
 *
 * <p>Keys are PEM files ({@code -----BEGIN PUBLIC KEY-----}, an X.509 {@code SubjectPublicKeyInfo}), as
 * {@code cxr-edge bundle keygen} writes them ({@code public.pem}); each is named by its key id
 * ({@link BundleSignature#keyIdOf}). The signature is checked with the trusted key, never with the key the
 * bundle embeds: that one is only a claim.
 */
public final class TrustPolicy {
    private static final String BEGIN = "-----BEGIN PUBLIC KEY-----";
    private static final String END = "-----END PUBLIC KEY-----";

    private final Map<String, byte[]> keys;
    private final String source;

    private TrustPolicy(Map<String, byte[]> keys, String source) {
        this.keys = Collections.unmodifiableMap(keys);
        this.source = source;
    }

    /**
     * A policy from PEM texts (e.g. read from the app's assets or from a managed configuration).
     *
     * @param source where they came from (for messages)
     * @param pems one public key PEM per item
     * @throws BundleFormatException a text is not an Ed25519 public key PEM, or there is none (a policy that
     *     trusts nothing would refuse every bundle: said when it is made instead)
     */
    public static TrustPolicy fromPem(String source, List<String> pems) {
        Map<String, byte[]> keys = new TreeMap<>();
        for (int i = 0; i < pems.size(); i++) {
            byte[] raw = publicKeyFromPem(pems.get(i), pems.size() == 1 ? source : source + "[" + i + "]");
            keys.put(BundleSignature.keyIdOf(raw), raw);
        }
        if (keys.isEmpty()) {
            throw new BundleFormatException(null, "no trusted keys", "one or more public key PEM files", source);
        }
        return new TrustPolicy(keys, source);
    }

    /**
     * Keys from a PEM file, or from every {@code *.pem} in a folder (Python's {@code TrustPolicy.from_path}).
     *
     * @throws BundleFormatException the path is missing, a file is not an Ed25519 public key, or there is none
     * @throws IOException a file cannot be read
     */
    public static TrustPolicy fromPath(Path path) throws IOException {
        List<Path> files = new ArrayList<>();
        if (Files.isDirectory(path)) {
            try (DirectoryStream<Path> dir = Files.newDirectoryStream(path, "*.pem")) {
                for (Path p : dir) {
                    files.add(p);
                }
            }
            Collections.sort(files);
        } else if (Files.isRegularFile(path)) {
            files.add(path);
        } else {
            throw new BundleFormatException(null, "trusted keys not found", "a PEM file or a folder", path.toString());
        }
        Map<String, byte[]> keys = new TreeMap<>();
        for (Path file : files) {
            byte[] raw = publicKeyFromPem(new String(Files.readAllBytes(file), StandardCharsets.UTF_8), file.toString());
            keys.put(BundleSignature.keyIdOf(raw), raw);
        }
        if (keys.isEmpty()) {
            throw new BundleFormatException(null, "no trusted keys", "one or more public key PEM files",
                    path.toString());
        }
        return new TrustPolicy(keys, path.toString());
    }

    /**
     * The raw 32-byte Ed25519 key of a {@code BEGIN PUBLIC KEY} PEM.
     *
     * @param where the file, for messages
     * @throws BundleFormatException not a public key PEM, or not Ed25519
     */
    public static byte[] publicKeyFromPem(String pem, String where) {
        int begin = pem.indexOf(BEGIN);
        int end = pem.indexOf(END);
        if (begin < 0 || end < begin) {
            throw new BundleFormatException(null, "cannot read the public key", "an Ed25519 public key PEM",
                    where + ": no " + BEGIN + " block");
        }
        byte[] der;
        try {
            der = Base64.getMimeDecoder().decode(pem.substring(begin + BEGIN.length(), end).trim());
        } catch (IllegalArgumentException e) {
            throw new BundleFormatException(null, "cannot read the public key", "an Ed25519 public key PEM",
                    where + ": " + e.getMessage());
        }
        byte[] prefix = BundleSignature.SPKI_PREFIX;
        if (der.length != prefix.length + 32 || !Arrays.equals(Arrays.copyOf(der, prefix.length), prefix)) {
            throw new BundleFormatException(null, "not an Ed25519 key", BundleSignature.ALGORITHM,
                    where + ": another key type or a malformed key");
        }
        return Arrays.copyOfRange(der, prefix.length, der.length);
    }

    /**
     * Verifies a bundle's signature over its manifest bytes with the trusted keys (Python's {@code verify}).
     *
     * @param manifest the exact bytes of {@code manifest.json}
     * @param signature its parsed {@code signature.json}, or null when it has none
     * @return the key id that verified it
     * @throws UntrustedBundleException unsigned, signed by a key not in this policy, or the signature does not
     *     match the manifest (it was changed after signing); the messages are Python's
     * @throws UnsupportedOperationException this Java runtime has no Ed25519
     */
    public String check(byte[] manifest, BundleSignature signature) {
        String trusted = keys.isEmpty() ? "none" : String.join(", ", keys.keySet());
        if (signature == null) {
            throw new UntrustedBundleException("bundle is not signed", "a signature by a trusted key (" + trusted + ")",
                    "none");
        }
        byte[] key = keys.get(signature.keyId());
        if (key == null) {
            throw new UntrustedBundleException("bundle is signed by a key this device does not trust", trusted,
                    signature.keyId());
        }
        if (!BundleSignature.verify(key, signature.signature(), manifest)) {
            throw new UntrustedBundleException(
                    "bundle signature does not match its manifest: the bundle was changed after signing",
                    "manifest signed by " + signature.keyId(),
                    "manifest sha256 " + Sha256.hex(manifest).substring(0, 16) + "...");
        }
        return signature.keyId();
    }

    /** The trusted key ids, sorted. */
    public Set<String> keyIds() {
        return keys.keySet();
    }

    /** Where the keys were read from. */
    public String source() {
        return source;
    }
}
