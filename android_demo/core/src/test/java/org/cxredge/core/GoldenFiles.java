package org.cxredge.core;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.awt.image.BufferedImage;
import java.awt.image.Raster;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;

/**
 * Where the tests find their reference data, and how they read it.
 *
 * <ul>
 *   <li>{@code cxr.repo} - the cxr-edge repository root (default: found by walking up from the
 *       working directory to the folder holding {@code tests/golden/index.json});
 *   <li>the committed golden vectors in {@code tests/golden}, the default bundle in
 *       {@code cxr_edge/data/default_bundle} and the sample images in {@code cxr_edge/data/samples};
 *   <li>{@code cxr.golden.extra} - a folder written by {@code android_demo/tools/golden_extra.py}
 *       (the pytest wrapper always passes one). Tests that need it are skipped without it.
 * </ul>
 */
final class GoldenFiles {
    private static final Map<Path, Object> CACHE = new HashMap<>();

    private GoldenFiles() {
    }

    /** The repository root. */
    static Path repo() {
        String given = System.getProperty("cxr.repo");
        if (given != null && !given.isEmpty()) {
            return Paths.get(given).toAbsolutePath().normalize();
        }
        Path p = Paths.get("").toAbsolutePath();
        while (p != null) {
            if (Files.isRegularFile(p.resolve("tests/golden/index.json"))) {
                return p;
            }
            p = p.getParent();
        }
        throw new IllegalStateException("cxr-edge repository not found: pass -Dcxr.repo=<path>");
    }

    /** {@code tests/golden}. */
    static Path golden() {
        return repo().resolve("tests/golden");
    }

    /** The shipped default bundle. */
    static Path bundle() {
        return repo().resolve("cxr_edge/data/default_bundle");
    }

    /** The shipped sample images. */
    static Path samples() {
        return repo().resolve("cxr_edge/data/samples");
    }

    /** Whether the extra golden folder was given. */
    static boolean hasExtra() {
        String dir = System.getProperty("cxr.golden.extra");
        return dir != null && !dir.isEmpty() && Files.isDirectory(Paths.get(dir));
    }

    /** A file of the extra golden folder; skips the calling test when there is none. */
    static Object extra(String name) {
        assumeTrue(hasExtra(), "no -Dcxr.golden.extra folder (written by android_demo/tools/golden_extra.py)");
        return json(Paths.get(System.getProperty("cxr.golden.extra")).resolve(name));
    }

    /** A parsed JSON file (cached: several tests read the same files). */
    static synchronized Object json(Path file) {
        return CACHE.computeIfAbsent(file.toAbsolutePath(), f -> Json.parse(text(f)));
    }

    /** A file's text (UTF-8). */
    static String text(Path file) {
        try {
            return new String(Files.readAllBytes(file), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A committed golden sample file, parsed. */
    static JsonObject goldenSample(String name) {
        return JsonObject.of(json(golden().resolve(name)), name);
    }

    /** The committed golden index. */
    static JsonObject goldenIndex() {
        return JsonObject.of(json(golden().resolve("index.json")), "index");
    }

    /** The file names of the committed golden samples. */
    static List<String> goldenNames() {
        return goldenIndex().stringList("files");
    }

    /**
     * Decodes an 8-bit greyscale PNG as the Python reader does ({@code value / 255} in float32).
     * Test-only: the app decodes with Android's {@code BitmapFactory}.
     */
    static FloatImage readGreyPng(Path file) {
        try {
            BufferedImage img = ImageIO.read(file.toFile());
            if (img == null || img.getRaster().getNumBands() != 1
                    || img.getRaster().getSampleModel().getSampleSize(0) != 8) {
                throw new IllegalArgumentException("not an 8-bit greyscale PNG: " + file);
            }
            Raster r = img.getRaster();
            int w = img.getWidth();
            int h = img.getHeight();
            float[] out = new float[w * h];
            for (int y = 0; y < h; y++) {
                for (int x = 0; x < w; x++) {
                    out[y * w + x] = r.getSample(x, y, 0) / 255.0f;
                }
            }
            return new FloatImage(w, h, out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The default bundle's manifest. */
    static BundleManifest manifest() {
        return BundleManifest.parse(text(bundle().resolve(BundleManifest.FILE_NAME)));
    }

    /** The default bundle's manifest without its segmenter (and lung evidence): whole-image classifiers. */
    static BundleManifest manifestWithoutSegmenter() {
        Map<String, Object> json = new java.util.LinkedHashMap<>(
                JsonObject.of(Json.parse(text(bundle().resolve(BundleManifest.FILE_NAME))), "").asMap());
        json.remove("segmenter");
        json.remove("lung_evidence");
        return BundleManifest.fromJson(json);
    }

    /**
     * The lung crop a committed golden sample was classified on, or null (border crop: no segmenter, or one
     * of role "evidence", whose stored box is its mask's, not what the classifiers saw).
     */
    static CropBox goldenCrop(JsonObject golden) {
        if (!goldenCrops(golden)) {
            return null;
        }
        int[] b = golden.object("segmenter").object("crop").intArray("box");
        return new CropBox(b[0], b[1], b[2], b[3]);
    }

    /** Whether a committed golden sample's classifiers saw the lung crop (a segmenter of role "crop"). */
    static boolean goldenCrops(JsonObject golden) {
        return golden.has("segmenter") && SegmenterEntry.ROLE_CROP.equals(
                golden.object("segmenter").string("role", SegmenterEntry.ROLE_CROP));
    }

    /** The region the pipeline classified in an extra sample: its lung box, else the border crop. */
    static CropBox pipelineRegion(JsonObject sample) {
        int[] b = sample.raw("pipeline_box") != null ? sample.intArray("pipeline_box") : sample.intArray("region");
        return new CropBox(b[0], b[1], b[2], b[3]);
    }
}
