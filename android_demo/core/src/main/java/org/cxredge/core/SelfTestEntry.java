package org.cxredge.core;

import java.util.Arrays;
import java.util.Set;
import java.util.TreeSet;

/**
 * The bundle's self-test file ({@code manifest.selftest}: golden inputs and outputs per stage, which the
 * Python runtime replays with {@code cxr-edge bundle selftest}), pinned by its SHA-256 like a model file.
 * Mirrors {@code cxr_edge.bundle.entries.SelfTestEntry}. This port does not run the self-test; it verifies the
 * file's checksum on load ({@link LoadedBundle}), so a bundle whose self-test was changed is refused here too.
 */
public final class SelfTestEntry implements BundleFile {
    private static final Set<String> KEYS = new TreeSet<>(Arrays.asList("file", "sha256"));

    private final String file;
    private final String sha256;

    private SelfTestEntry(JsonObject o) {
        o.requireKnownKeys(KEYS, "self-test entry");
        file = ModelEntry.plainFileName(o.string("file"), o.child("file"));
        sha256 = o.string("sha256");
    }

    /** Parses {@code manifest.selftest}. */
    public static SelfTestEntry fromJson(JsonObject o) {
        return new SelfTestEntry(o);
    }

    @Override
    public String file() {
        return file;
    }

    @Override
    public String sha256() {
        return sha256;
    }
}
