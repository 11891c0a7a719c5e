package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import org.junit.jupiter.api.Test;

/**
 * Signed bundles and the trust policy against Python ({@code signed.json} of the extra golden vectors,
 * {@code android_demo/tools/golden_signature.py}): key ids of the PEM keys {@code cxr-edge bundle keygen} wrote,
 * {@link LoadedBundle#load} of signed, re-signed, tampered and unsigned copies of the {@code paper} bundle under
 * no policy, either key and both (read or refused with Python's message, word for word), the signature checked
 * against the key a bundle embeds (the browser's check), and malformed {@code signature.json} files.
 */
class SignatureTest {
    private static JsonObject signed() {
        return JsonObject.of(GoldenFiles.extra("signed.json"), "signed");
    }

    /** A path of {@code signed.json} (relative to the extra golden folder). */
    private static Path extraPath(String relative) {
        return Paths.get(System.getProperty("cxr.golden.extra")).resolve(relative);
    }

    private static TrustPolicy policy(String name) throws IOException {
        JsonObject keys = signed().object("keys");
        switch (name) {
            case "none":
                return null;
            case "both":
                return TrustPolicy.fromPath(extraPath(keys.object("both").string("dir")));
            default:
                return TrustPolicy.fromPath(extraPath(keys.object(name).string("public")));
        }
    }

    @Test
    void keyIdsAreComputedAsInPython() throws IOException {
        JsonObject keys = signed().object("keys");
        String maker = keys.object("maker").string("key_id");
        String other = keys.object("other").string("key_id");
        assertTrue(maker.matches("ed25519:[0-9a-f]{16}"), maker);
        for (String name : Arrays.asList("maker", "other")) {
            Path pem = extraPath(keys.object(name).string("public"));
            byte[] raw = TrustPolicy.publicKeyFromPem(new String(Files.readAllBytes(pem), StandardCharsets.UTF_8),
                    pem.toString());
            assertEquals(32, raw.length);
            assertEquals(keys.object(name).string("key_id"), BundleSignature.keyIdOf(raw));
            assertEquals(new TreeSet<>(List.of(keys.object(name).string("key_id"))), policy(name).keyIds());
        }
        assertEquals(new TreeSet<>(Arrays.asList(maker, other)), policy("both").keyIds());
    }

    @Test
    void loadsAndRefusesExactlyAsPython() throws IOException {
        JsonObject data = signed();
        JsonObject bundles = data.object("bundles");
        JsonObject loads = data.object("loads");
        int refused = 0;
        int trusted = 0;
        for (String name : bundles.keys()) {
            Path dir = extraPath(bundles.object(name).string("dir"));
            JsonObject byPolicy = loads.object(name);
            for (String policyName : byPolicy.keys()) {
                JsonObject want = byPolicy.object(policyName);
                String label = name + " under policy " + policyName;
                TrustPolicy policy = policy(policyName);
                if (want.bool("ok")) {
                    LoadedBundle bundle = LoadedBundle.load(dir, policy);
                    assertEquals(want.raw("trusted_by"), bundle.trustedBy(), label);
                    BundleSignature sig = bundle.signature();
                    assertEquals(want.raw("key_id"), sig == null ? null : sig.keyId(), label);
                    assertEquals(want.raw("signed_at"), sig == null ? null : sig.signedAt(), label);
                    String status = bundle.signatureStatus();
                    if (sig == null) {
                        assertEquals("unsigned", status, label);
                    } else if (policy == null) {
                        assertEquals("signed by " + sig.keyId() + " on " + sig.signedAt()
                                + " (not verified: no trusted keys set)", status, label);
                    } else {
                        trusted++;
                        assertTrue(status.endsWith("verified against this device's trusted keys"), status);
                    }
                    BundleManifest manifest = bundle.manifest();
                    assertEquals(manifest.modelFiles().size() + 1, manifest.pinnedFiles().size(), label); // + self-test
                    continue;
                }
                refused++;
                CxrEdgeException e = assertThrows(CxrEdgeException.class, () -> LoadedBundle.load(dir, policy), label);
                String type = want.string("type");
                Class<?> expected = type.equals("UntrustedBundleError") ? UntrustedBundleException.class
                        : BundleFormatException.class;
                assertEquals(expected, e.getClass(), label + ": " + e.getMessage());
                assertEquals(want.string("problem"), e.problem(), label);
                assertEquals(want.string("message"), e.getMessage(), label);
            }
        }
        assertTrue(refused >= 15 && trusted >= 4, refused + " refused, " + trusted + " trusted");
    }

    @Test
    void theSignatureAgainstItsOwnKeyIsJudgedAsInPython() throws IOException {
        JsonObject data = signed();
        JsonObject own = data.object("own_key");
        int valid = 0;
        int invalid = 0;
        for (String name : own.keys()) {
            Path dir = extraPath(data.object("bundles").object(name).string("dir"));
            JsonObject want = own.object(name);
            Path file = dir.resolve(BundleSignature.FILE_NAME);
            String status;
            BundleSignature sig = null;
            if (!Files.isRegularFile(file)) {
                status = "unsigned";
            } else {
                try {
                    sig = BundleSignature.parse(Files.readAllBytes(file));
                    boolean ok = sig.verifiesWithItsOwnKey(Files.readAllBytes(dir.resolve(BundleManifest.FILE_NAME)));
                    status = ok ? "valid" : "invalid";
                } catch (UntrustedBundleException e) {
                    status = "malformed";
                    assertEquals(want.string("problem"), e.problem(), name);
                }
            }
            assertEquals(want.string("status"), status, name);
            if (sig != null) {
                assertEquals(want.string("key_id"), BundleSignature.keyIdOf(sig.publicKey()), name);
                assertEquals(want.string("claimed_key_id"), sig.keyId(), name);
                valid += status.equals("valid") ? 1 : 0;
                invalid += status.equals("invalid") ? 1 : 0;
            }
        }
        assertTrue(valid >= 2 && invalid >= 3, valid + " valid, " + invalid + " invalid");
    }

    @Test
    void readsSignatureFilesAsPython() {
        int refusedCount = 0;
        for (Object item : signed().array("signatures")) {
            JsonObject c = JsonObject.of(item, "signatures");
            String name = c.string("name");
            JsonObject want = c.object("python");
            byte[] bytes = c.string("text").getBytes(StandardCharsets.UTF_8);
            if (want.bool("ok")) {
                BundleSignature sig = BundleSignature.parse(bytes);
                assertEquals(want.string("key_id"), sig.keyId(), name);
                assertArrayEquals(Base64.getDecoder().decode(want.string("public_key")), sig.publicKey(), name);
                assertEquals(want.string("signed_at"), sig.signedAt(), name);
                assertEquals(64, sig.signature().length, name);
                continue;
            }
            refusedCount++;
            UntrustedBundleException e = assertThrows(UntrustedBundleException.class,
                    () -> BundleSignature.parse(bytes), name);
            assertEquals(want.string("problem"), e.problem(), name);
            // Python's sentence and what it expected; what it received is each library's own words.
            String python = want.string("message");
            assertEquals(python.substring(0, python.indexOf("; received")),
                    e.getMessage().substring(0, e.getMessage().indexOf("; received")), name);
        }
        assertTrue(refusedCount >= 10, String.valueOf(refusedCount));
    }

    @Test
    void aKeyFolderHoldingThePrivateKeyIsRefusedAsInPython() {
        JsonObject data = signed();
        JsonObject want = data.object("policies").object("maker_key_folder");
        assertFalse(want.bool("ok"));
        Path dir = extraPath(data.object("keys").object("maker").string("dir"));
        BundleFormatException e = assertThrows(BundleFormatException.class, () -> TrustPolicy.fromPath(dir));
        assertEquals(want.string("problem"), e.problem());
        BundleFormatException none = assertThrows(BundleFormatException.class,
                () -> TrustPolicy.fromPem("nothing", List.of()));
        assertEquals("no trusted keys", none.problem());
    }

    /** RFC 8032, section 7.1, test 1 (the empty message): the JDK's Ed25519 through the raw-key path. */
    @Test
    void verifiesTheRfc8032TestVector() {
        byte[] key = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        byte[] sig = hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065"
                + "224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
        assertTrue(BundleSignature.verify(key, sig, new byte[0]));
        assertFalse(BundleSignature.verify(key, sig, new byte[] {0}));
        sig[10] ^= 1;
        assertFalse(BundleSignature.verify(key, sig, new byte[0]));
        assertFalse(BundleSignature.verify(new byte[32], sig, new byte[0])); // not a key: verifies nothing
    }

    @Test
    void aTamperedManifestIsRefusedWithTheTrustedKeyNotTheEmbeddedOne() throws IOException {
        // claims_maker: a valid signature by the other key, which it embeds, under the maker's key id. Checked
        // with the embedded key it would pass; the trusted key decides, so it is refused.
        JsonObject data = signed();
        Path dir = extraPath(data.object("bundles").object("claims_maker").string("dir"));
        UntrustedBundleException e = assertThrows(UntrustedBundleException.class,
                () -> LoadedBundle.load(dir, policy("maker")));
        assertTrue(e.problem().startsWith("bundle signature does not match its manifest"), e.getMessage());
        // Without a policy it loads, and says whose signature it claims to be.
        LoadedBundle loaded = LoadedBundle.load(dir, null);
        assertTrue(loaded.signatureStatus().startsWith("signed by " + data.object("keys").object("maker")
                .string("key_id")), loaded.signatureStatus());
        assertNull(loaded.trustedBy());
    }

    @Test
    void aManifestPinsItsSelfTestLikeAModelFile() throws IOException {
        Path paper = GoldenFiles.repo().resolve("cxr_edge/data/paper_bundle");
        LoadedBundle bundle = LoadedBundle.load(paper, null);
        SelfTestEntry selfTest = bundle.manifest().selfTest();
        assertNotNull(selfTest);
        assertEquals("selftest.json", selfTest.file());
        assertEquals(Sha256.hex(Files.readAllBytes(paper.resolve(selfTest.file()))), selfTest.sha256());
        assertEquals(selfTest, bundle.manifest().pinnedFiles().get(bundle.manifest().pinnedFiles().size() - 1));
        assertArrayEquals(Files.readAllBytes(paper.resolve("selftest.json")), bundle.bytesOf(selfTest));
        // Read as Python reads it: null is none; unknown keys, a missing digest or another type are refused.
        @SuppressWarnings("unchecked")
        Map<String, Object> base = (Map<String, Object>) Json.parse(
                GoldenFiles.text(paper.resolve(BundleManifest.FILE_NAME)));
        Map<String, Object> m = new LinkedHashMap<>(base);
        m.put("selftest", null);
        assertNull(BundleManifest.fromJson(m).selfTest());
        m.remove("selftest");
        assertNull(BundleManifest.fromJson(m).selfTest());
        Map<String, Object> entry = new LinkedHashMap<>();
        entry.put("file", "selftest.json");
        m.put("selftest", entry);
        assertEquals("selftest.sha256", assertThrows(BundleFormatException.class,
                () -> BundleManifest.fromJson(m)).field());
        entry.put("sha256", "0");
        entry.put("stages", 3L);
        assertEquals("unknown keys in self-test entry", assertThrows(BundleFormatException.class,
                () -> BundleManifest.fromJson(m)).problem());
        m.put("selftest", "selftest.json");
        assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m));
        entry.remove("stages");
        entry.put("file", "../selftest.json");
        m.put("selftest", entry);
        assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m));
    }

    private static byte[] hex(String s) {
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }
}
