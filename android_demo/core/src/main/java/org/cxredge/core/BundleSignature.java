package org.cxredge.core;

import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.NoSuchAlgorithmException;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.X509EncodedKeySpec;
import java.util.Arrays;
import java.util.Base64;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * A bundle's {@code signature.json}: an Ed25519 signature over the exact bytes of {@code manifest.json}, which
 * pins every other file by its SHA-256. Mirrors {@code cxr_edge.bundle.signature} ({@code Signature},
 * {@code read_signature}, {@code key_id}):
 *
 * <pre>
 * {"format": 1, "algorithm": "Ed25519", "signed_file": "manifest.json", "manifest_sha256": "...",
 *  "key_id": "ed25519:&lt;16 hex&gt;", "public_key": "&lt;base64, 32 bytes&gt;", "signature": "&lt;base64, 64 bytes&gt;",
 *  "signed_at": "..."}
 * </pre>
 *
 * <p>The embedded public key only says <em>who claims</em> to have signed; trust comes from the keys the device
 * was given ({@link TrustPolicy}). Verification uses the JDK's Ed25519 ({@code java.security}, Java 15+): the raw
 * 32-byte key becomes an X.509 {@code SubjectPublicKeyInfo} ({@link #SPKI_PREFIX} + key) for
 * {@code KeyFactory.getInstance("Ed25519")}, then {@code Signature.getInstance("Ed25519")}.
 */
public final class BundleSignature {
    /** File name beside {@code manifest.json}. */
    public static final String FILE_NAME = "signature.json";
    /** The only format this runtime reads. */
    public static final int FORMAT = 1;
    /** The only algorithm. */
    public static final String ALGORITHM = "Ed25519";
    /** DER prefix of an Ed25519 {@code SubjectPublicKeyInfo} (RFC 8410); the 32 raw key bytes follow. */
    static final byte[] SPKI_PREFIX = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    /** Python's {@code base64.b64decode(..., validate=True)}: the alphabet, then at most two pad characters. */
    private static final Pattern BASE64 = Pattern.compile("[A-Za-z0-9+/]*={0,2}");

    private final String keyId;
    private final byte[] publicKey;
    private final byte[] signature;
    private final String manifestSha256;
    private final String signedAt;

    private BundleSignature(String keyId, byte[] publicKey, byte[] signature, String manifestSha256,
            String signedAt) {
        this.keyId = keyId;
        this.publicKey = publicKey;
        this.signature = signature;
        this.manifestSha256 = manifestSha256;
        this.signedAt = signedAt;
    }

    /**
     * Parses {@code signature.json} as Python's {@code read_signature} does: format 1, algorithm Ed25519,
     * {@code key_id}, {@code public_key}, {@code signature} and {@code manifest_sha256} present, strict base64,
     * a 32-byte key and a 64-byte signature.
     *
     * @param bytes the file's bytes (UTF-8 JSON)
     * @throws UntrustedBundleException the file is malformed
     */
    public static BundleSignature parse(byte[] bytes) {
        String expected = "a format-" + FORMAT + " " + ALGORITHM + " signature.json";
        BundleSignature sig;
        try {
            String text = StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(bytes)).toString();
            Object parsed = Json.parse(text);
            if (!(parsed instanceof Map)) {
                throw new IllegalArgumentException("not a JSON object: " + JsonObject.describe(parsed));
            }
            Map<?, ?> data = (Map<?, ?>) parsed;
            Object format = data.get("format");
            Object algorithm = data.get("algorithm");
            if (!isOne(format) || !ALGORITHM.equals(algorithm)) {
                throw new IllegalArgumentException("format " + JsonObject.describe(format) + ", algorithm "
                        + JsonObject.describe(algorithm));
            }
            sig = new BundleSignature(text(data, "key_id"), base64(data, "public_key"), base64(data, "signature"),
                    text(data, "manifest_sha256"),
                    data.containsKey("signed_at") ? String.valueOf(data.get("signed_at")) : "");
        } catch (IllegalArgumentException | CharacterCodingException | JsonSyntaxException e) {
            throw new UntrustedBundleException("malformed bundle signature", expected, e.getMessage());
        }
        if (sig.publicKey.length != 32 || sig.signature.length != 64) {
            throw new UntrustedBundleException("malformed bundle signature", "a 32-byte key and a 64-byte signature",
                    sig.publicKey.length + " and " + sig.signature.length + " bytes");
        }
        return sig;
    }

    /** {@code 1} (Python compares with {@code ==}, so {@code 1.0} is 1 too). */
    private static boolean isOne(Object v) {
        return (v instanceof Long && (Long) v == 1L) || (v instanceof Double && (Double) v == 1.0);
    }

    private static String text(Map<?, ?> data, String key) {
        if (!data.containsKey(key)) {
            throw new IllegalArgumentException("missing key '" + key + "'");
        }
        return String.valueOf(data.get(key));
    }

    private static byte[] base64(Map<?, ?> data, String key) {
        if (!data.containsKey(key)) {
            throw new IllegalArgumentException("missing key '" + key + "'");
        }
        Object v = data.get(key);
        if (!(v instanceof String)) {
            throw new IllegalArgumentException(key + " is not base64 text: " + JsonObject.describe(v));
        }
        String s = (String) v;
        if (!BASE64.matcher(s).matches() || s.length() % 4 != 0) {
            throw new IllegalArgumentException(key + " is not strict base64");
        }
        return Base64.getDecoder().decode(s);
    }

    /**
     * The short, stable name of a public key, as Python's {@code key_id}: {@code ed25519:} and the first 16 hex
     * digits of the SHA-256 of its raw 32 bytes.
     */
    public static String keyIdOf(byte[] rawPublicKey) {
        return "ed25519:" + Sha256.hex(rawPublicKey).substring(0, 16);
    }

    /**
     * Whether {@code signature} is a valid Ed25519 signature of {@code message} by the raw 32-byte key.
     *
     * @throws UnsupportedOperationException this Java runtime has no Ed25519 (before Java 15; some Android
     *     releases): the caller must not read that as "invalid"
     */
    public static boolean verify(byte[] rawPublicKey, byte[] signature, byte[] message) {
        PublicKey key;
        Signature verifier;
        try {
            verifier = Signature.getInstance(ALGORITHM);
            key = KeyFactory.getInstance(ALGORITHM).generatePublic(new X509EncodedKeySpec(spki(rawPublicKey)));
        } catch (NoSuchAlgorithmException e) {
            throw new UnsupportedOperationException("Ed25519 is not available in this Java runtime", e);
        } catch (GeneralSecurityException e) {
            return false; // not a valid Ed25519 public key: it verifies nothing
        }
        try {
            verifier.initVerify(key);
            verifier.update(message);
            return verifier.verify(signature);
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            return false; // a malformed key point or signature encoding
        }
    }

    /** The X.509 {@code SubjectPublicKeyInfo} DER of a raw Ed25519 key. */
    static byte[] spki(byte[] rawPublicKey) {
        byte[] der = Arrays.copyOf(SPKI_PREFIX, SPKI_PREFIX.length + rawPublicKey.length);
        System.arraycopy(rawPublicKey, 0, der, SPKI_PREFIX.length, rawPublicKey.length);
        return der;
    }

    /**
     * Whether the signature verifies against the key this file embeds and that key is the one its key id names.
     * Not a trust decision: anyone can sign with a key of their own ({@link TrustPolicy} decides trust).
     */
    public boolean verifiesWithItsOwnKey(byte[] manifest) {
        return keyIdOf(publicKey).equals(keyId) && verify(publicKey, signature, manifest);
    }

    /** The signer's key id, as the file states it. */
    public String keyId() {
        return keyId;
    }

    /** The signer's raw 32-byte public key, as the file claims it (a copy). */
    public byte[] publicKey() {
        return publicKey.clone();
    }

    /** The 64-byte signature (a copy). */
    public byte[] signature() {
        return signature.clone();
    }

    /** SHA-256 of the signed manifest, as the file states it (for reading; the signature is what counts). */
    public String manifestSha256() {
        return manifestSha256;
    }

    /** UTC time of signing (ISO 8601), or "". */
    public String signedAt() {
        return signedAt;
    }
}
