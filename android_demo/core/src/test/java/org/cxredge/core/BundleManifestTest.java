package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;

class BundleManifestTest {
    @SuppressWarnings("unchecked")
    private static Map<String, Object> obj(Object v) {
        return (Map<String, Object>) v;
    }

    @SuppressWarnings("unchecked")
    private static List<Object> list(Object v) {
        return (List<Object>) v;
    }

    private static Map<String, Object> model0(Map<String, Object> m) {
        return obj(list(m.get("models")).get(0));
    }

    /**
     * A fresh, mutable parse of the first release's format-2 manifest (one CNN, no segmenter): the base of
     * the refusal cases (golden_extra.py mutates the same file) and of the format-1 and segmenter tests.
     */
    @SuppressWarnings("unchecked")
    private static Map<String, Object> baseJson() {
        return (Map<String, Object>) Json.parse(
                GoldenFiles.text(GoldenFiles.repo().resolve("tests/data/first_release_bundle/manifest.json")));
    }

    private static BundleFormatException refused(Consumer<Map<String, Object>> mutation) {
        Map<String, Object> m = baseJson();
        mutation.accept(m);
        return assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m));
    }

    @Test
    void readsTheDefaultBundle() {
        BundleManifest m = GoldenFiles.manifest();
        assertEquals(3, m.formatVersion());
        assertEquals("cxr-edge-default", m.name());
        assertEquals(Arrays.asList("covid", "normal", "pneumonia"), m.labels());
        PreprocessSpec p = m.preprocess();
        assertEquals(128, p.height());
        assertEquals(128, p.width());
        assertEquals(1, p.channels());
        assertEquals(0.08, p.border());
        assertTrue(p.clahe());
        assertEquals(2.0, p.claheClip());
        assertEquals(8, p.claheTiles());
        assertEquals(3, p.median());
        assertEquals("standardize", p.normalize());
        assertEquals("mean", m.ensemble().method());
        assertTrue(m.ensemble().members().size() >= 3);
        assertNotNull(m.segmenter());
        int int8Members = 0;
        for (String name : m.ensemble().members()) {
            ModelEntry member = m.model(name);
            // int8 where the gate passed; a member whose int8 variant failed it runs fp32
            assertTrue(member.input().dtype() == DType.INT8 || member.input().dtype() == DType.FLOAT32);
            if (member.input().dtype() == DType.INT8) int8Members++;
            assertTrue(member.hasHeatMap());
            assertEquals(3, member.camWeights()[0].length);
        }
        assertTrue(int8Members >= 2);
        assertFalse(m.provenance().isEmpty());
        for (ModelFile f : m.modelFiles()) {
            assertTrue(Files.isRegularFile(GoldenFiles.bundle().resolve(f.file())), f.file());
        }
    }

    @Test
    void modelFilesMatchTheirChecksums() throws java.io.IOException {
        for (ModelFile f : GoldenFiles.manifest().modelFiles()) {
            byte[] data = Files.readAllBytes(GoldenFiles.bundle().resolve(f.file()));
            Sha256.verify(f, data);
            data[data.length / 2] ^= 1;
            BundleFormatException e = assertThrows(BundleFormatException.class, () -> Sha256.verify(f, data));
            assertEquals(f.sha256().substring(0, 16) + "...", e.expected());
        }
        assertEquals("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Sha256.hex(new byte[0]));
    }

    @Test
    void readsWhatPythonReads() {
        JsonObject s = JsonObject.of(GoldenFiles.extra("manifest.json"), "").object("summary");
        BundleManifest m = GoldenFiles.manifest();
        assertEquals(s.integer("format_version"), m.formatVersion());
        assertEquals(s.string("name"), m.name());
        assertEquals(s.stringList("labels"), m.labels());
        assertEquals(s.stringList("members"), m.ensemble().members());
        assertEquals(s.string("method"), m.ensemble().method());
        assertEquals(s.number("temperature"), m.ensemble().temperature());
        JsonObject pre = s.object("preprocess");
        assertEquals(pre.number("border"), m.preprocess().border());
        assertEquals(pre.number("clahe_clip"), m.preprocess().claheClip());
        List<Object> models = s.array("models");
        assertEquals(models.size(), m.models().size());
        for (int i = 0; i < models.size(); i++) {
            JsonObject e = JsonObject.of(models.get(i), "models[" + i + "]");
            ModelEntry entry = m.models().get(i);
            assertEquals(e.string("name"), entry.name());
            assertEquals(e.string("file"), entry.file());
            assertEquals(e.string("sha256"), entry.sha256());
            JsonObject in = e.object("input");
            assertArrayEquals(in.intArray("shape"), entry.input().shape());
            assertEquals(in.string("dtype"), entry.input().dtype().jsonName());
            assertEquals(in.number("scale"), entry.input().scale());
            assertEquals(in.integer("zero_point"), entry.input().zeroPoint());
            assertEquals(e.stringList("outputs"), new ArrayList<>(new TreeSet<>(entry.outputs().keySet())));
            int[] shape = e.intArray("cam_weights_shape");
            assertEquals(shape[0], entry.camWeights().length);
            assertEquals(shape[1], entry.camWeights()[0].length);
            double sum = 0;
            for (double[] row : entry.camWeights()) {
                for (double v : row) {
                    sum += v;
                }
            }
            assertEquals(e.number("cam_weights_sum"), sum, 1e-9);
        }
    }

    @Test
    void refusesTheManifestsPythonRefuses() {
        List<Object> bad = JsonObject.of(GoldenFiles.extra("manifest.json"), "").array("bad");
        assertTrue(bad.size() >= 20);
        for (Object item : bad) {
            JsonObject c = JsonObject.of(item, "bad");
            assertNotNull(c.raw("python_error"), c.string("name") + ": Python accepts it");
            Map<String, Object> m = baseJson();
            for (Object op : c.array("ops")) {
                apply(m, JsonObject.of(op, "op"));
            }
            BundleFormatException e = assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m),
                    c.string("name"));
            assertNotNull(e.expected(), c.string("name") + ": " + e.getMessage());
            System.out.println("REFUSED " + c.string("name") + ": " + e.getMessage());
        }
    }

    @SuppressWarnings("unchecked")
    private static void apply(Map<String, Object> root, JsonObject op) {
        List<Object> path = op.array("path");
        Object node = root;
        for (int i = 0; i < path.size() - 1; i++) {
            Object key = path.get(i);
            node = key instanceof Long ? ((List<Object>) node).get((int) (long) (Long) key)
                    : ((Map<String, Object>) node).get(key);
        }
        Object last = path.get(path.size() - 1);
        if ("set".equals(op.string("op"))) {
            if (last instanceof Long) {
                ((List<Object>) node).set((int) (long) (Long) last, op.raw("value"));
            } else {
                ((Map<String, Object>) node).put((String) last, op.raw("value"));
            }
        } else {
            ((Map<String, Object>) node).remove(last);
        }
    }

    @Test
    void unsupportedFormatSaysExpectedAndReceived() {
        BundleFormatException e = refused(m -> m.put("format_version", 5L));
        assertEquals("format_version", e.field());
        assertEquals("format_version in (1, 2, 3, 4)", e.expected());
        assertEquals("format_version 5", e.received());
        e = refused(m -> m.put("format_version", 4L)); // format 4 is read only with its site section
        assertEquals("site calibration and format version disagree", e.problem());
        e = refused(m -> m.remove("format_version"));
        assertEquals("format_version null", e.received());
    }

    @Test
    void notAnObject() {
        BundleFormatException e = assertThrows(BundleFormatException.class,
                () -> BundleManifest.fromJson(Arrays.asList(1L, 2L)));
        assertEquals("a JSON object", e.expected());
        assertEquals("a list of 2", e.received());
        assertThrows(JsonSyntaxException.class, () -> BundleManifest.parse("{\"format_version\": 2,"));
    }

    @Test
    void namesTheOffendingField() {
        BundleFormatException e = refused(m -> obj(model0(m).get("input")).put("dtype", "float16"));
        assertEquals("models[0].input.dtype", e.field());
        assertEquals("\"float16\"", e.received());

        e = refused(m -> obj(m.get("preprocess")).put("clahe_tiles", 8.0));
        assertEquals("preprocess.clahe_tiles", e.field());
        assertEquals("an integer", e.expected());
        assertEquals("8.0", e.received());

        e = refused(m -> obj(m.get("preprocess")).put("clahe", 1L));
        assertEquals("true or false", e.expected());

        e = refused(m -> m.put("colour", "blue"));
        assertEquals("[colour]", e.received());
        assertTrue(e.expected().startsWith("keys among [card, decode, ensemble, format_version, label_map"), e.expected());

        e = refused(m -> model0(m).remove("sha256"));
        assertEquals("models[0].sha256", e.field());
        assertEquals("missing required key", e.problem());

        e = refused(m -> model0(m).put("file", "../evil.tflite"));
        assertEquals("a plain file name", e.expected());
        assertEquals("../evil.tflite", e.received());

        e = refused(m -> obj(m.get("preprocess")).put("median", 4L));
        assertEquals("0, 1 or an odd size", e.expected());
        assertEquals("4", e.received());

        e = refused(m -> obj(m.get("ensemble")).put("members", new ArrayList<>(Arrays.asList("nope"))));
        assertEquals("[nope]", e.received());

        e = refused(m -> obj(obj(model0(m).get("outputs")).get("probs")).put("shape",
                new ArrayList<Object>(Arrays.asList(1L, 4L))));
        assertEquals("outputs.probs of shape (1, 3)", e.expected());
        assertEquals("[1, 4]", e.received());

        e = refused(m -> model0(m).put("cam_weights", new ArrayList<Object>(Arrays.asList(
                new ArrayList<Object>(Arrays.asList(1.0, 2.0, 3.0))))));
        assertEquals("models[0].cam_weights", e.field());
        assertEquals("1 rows", e.received());
    }

    @Test
    void acceptsAVersionOneManifestAndDefaults() {
        Map<String, Object> m = baseJson();
        m.put("format_version", 1L);
        m.put("preprocess", new LinkedHashMap<String, Object>());
        m.remove("provenance");
        for (Object model : list(m.get("models"))) {
            obj(model).remove("cam_weights");
            obj(model).remove("gate");
        }
        obj(m.get("ensemble")).remove("temperature");
        BundleManifest parsed = BundleManifest.fromJson(m);
        assertEquals(1, parsed.formatVersion());
        assertEquals(256, parsed.preprocess().width());
        assertEquals(0.0, parsed.preprocess().border());
        assertEquals(1.0, parsed.ensemble().temperature());
        assertFalse(parsed.models().get(0).hasHeatMap());
        assertTrue(parsed.provenance().isEmpty());
    }

    @Test
    void readsASegmenter() {
        Map<String, Object> m = baseJson();
        m.put("segmenter", Json.parse(SEGMENTER));
        BundleManifest parsed = BundleManifest.fromJson(m);
        SegmenterEntry seg = parsed.segmenter();
        assertEquals("unet16-int8", seg.name());
        assertEquals(128, seg.preprocess().width());
        assertEquals(0.6, seg.crop().threshold());
        assertEquals(0.05, seg.crop().margin());
        assertEquals(4, parsed.modelFiles().size());
        assertEquals(SegmenterEntry.ROLE_CROP, seg.role()); // no role: the paper's lung crop
        assertTrue(seg.crops());

        for (String role : Arrays.asList("crop", "evidence")) {
            Map<String, Object> withRole = baseJson();
            Map<String, Object> roleJson = obj(Json.parse(SEGMENTER));
            roleJson.put("role", role);
            withRole.put("segmenter", roleJson);
            SegmenterEntry read = BundleManifest.fromJson(withRole).segmenter();
            assertEquals(role, read.role());
            assertEquals("crop".equals(role), read.crops());
        }
        for (Object role : Arrays.asList("lungs", null, 1L)) {
            Map<String, Object> badRole = baseJson();
            Map<String, Object> roleJson = obj(Json.parse(SEGMENTER));
            roleJson.put("role", role);
            badRole.put("segmenter", roleJson);
            BundleFormatException e = assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(badRole),
                    String.valueOf(role));
            assertEquals("segmenter.role", e.field(), e.getMessage());
        }

        Map<String, Object> bad = baseJson();
        Map<String, Object> segJson = obj(Json.parse(SEGMENTER));
        obj(obj(segJson.get("outputs")).get("mask")).put("shape", new ArrayList<Object>(Arrays.asList(1L, 64L, 64L, 1L)));
        bad.put("segmenter", segJson);
        BundleFormatException e = assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(bad));
        assertEquals("segmenter.outputs", e.field());
    }

    /** A segmenter entry in the manifest format (the first release's bundle has none). */
    static final String SEGMENTER = "{\"name\": \"unet16-int8\", \"file\": \"unet16-int8.tflite\", \"sha256\": \"00\","
            + " \"quant\": \"int8\", \"input\": {\"shape\": [1, 128, 128, 1], \"dtype\": \"float32\"},"
            + " \"outputs\": {\"mask\": {\"shape\": [1, 128, 128, 1], \"dtype\": \"float32\"}},"
            + " \"params\": 1000, \"macs\": 2000,"
            + " \"preprocess\": {\"input_size\": [128, 128], \"border\": 0.0, \"clahe\": true, \"median\": 0},"
            + " \"crop\": {\"threshold\": 0.6}}";
}
