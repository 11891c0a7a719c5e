package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * A site-calibrated bundle (format 4) against the Python runtime ({@code site.json} of the extra golden
 * vectors, {@code android_demo/tools/golden_site.py}): the refitted member heads and the site
 * temperature and bias alone, the whole pipeline on the golden samples with the recorded model outputs
 * (full ensemble and a chosen subset), and the manifests Python reads or refuses.
 */
class SiteTest {
    /** The site operations alone: float64 on both sides, sums in other orders (observed ~1e-16). */
    static final double MATH_TOLERANCE = 1e-12;

    private static JsonObject site() {
        return JsonObject.of(GoldenFiles.extra("site.json"), "site");
    }

    private static BundleManifest calibrated() {
        return BundleManifest.fromJson(site().object("manifest").asMap());
    }

    /** The outputs {@code samples.json} recorded for a golden sample (the bundle's models are the default's). */
    private static JsonObject recorded(String file) {
        for (Object item : JsonObject.of(GoldenFiles.extra("samples.json"), "").array("samples")) {
            JsonObject s = JsonObject.of(item, "sample");
            if (s.string("file").equals(file)) {
                return s;
            }
        }
        throw new AssertionError("no recorded outputs for " + file);
    }

    private static List<JsonObject> objects(JsonObject o, String key) {
        List<JsonObject> out = new ArrayList<>();
        for (Object item : o.array(key)) {
            out.add(JsonObject.of(item, key));
        }
        return out;
    }

    @Test
    void headsAndSiteTemperatureMatchPython() {
        JsonObject math = site().object("math");
        double worst = 0;
        for (JsonObject c : objects(math, "heads")) {
            double[] got = new SiteCalibration.Head(c.numberMatrix("weights"), c.numberArray("bias"))
                    .probs(GoldenArray.of(c, "features").floats());
            double[] want = c.numberArray("expected");
            worst = Math.max(worst, Diff.maxAbs(want, got));
            assertEquals(Ensemble.argmax(want), Ensemble.argmax(got));
        }
        for (JsonObject c : objects(math, "apply")) {
            double[] got =
                    SiteCalibration.apply(c.numberArray("probs"), c.number("temperature"), c.numberArray("bias"));
            double[] want = c.numberArray("expected");
            worst = Math.max(worst, Diff.maxAbs(want, got));
            assertEquals(Ensemble.argmax(want), Ensemble.argmax(got));
        }
        Diff.assertWithin(MATH_TOLERANCE, worst, "site heads and site temperature/bias (synthetic)");
        SiteCalibration.Head head = new SiteCalibration.Head(new double[5][3], new double[3]);
        assertThrows(ModelOutputException.class, () -> head.probs(new float[12]));
    }

    @Test
    void readsTheSiteSection() {
        JsonObject json = site().object("manifest").object("site");
        BundleManifest m = calibrated();
        SiteCalibration s = m.site();
        assertEquals(4, m.formatVersion());
        assertNotNull(s);
        assertEquals(json.string("name"), s.name());
        assertEquals(json.string("date"), s.date());
        assertEquals(json.string("parent_sha256"), s.parentSha256());
        assertEquals("head", s.method());
        assertEquals(json.number("temperature"), s.temperature());
        assertEquals(Arrays.toString(json.numberArray("bias")), Arrays.toString(s.bias()));
        assertEquals(m.ensemble().members(), new ArrayList<>(s.heads().keySet()));
        for (String member : m.ensemble().members()) {
            TensorSpec features = m.model(member).outputs().get("features");
            assertEquals(features.dim(features.rank() - 1), s.heads().get(member).channels());
        }
        assertEquals(json.integer("patients"), s.patients());
        assertEquals(json.object("images").keys(), s.images().keySet());
        assertNull(s.operatingPoint());
        assertFalse(s.metrics().isEmpty());
        assertEquals(json.stringList("image_digests"), s.imageDigests());
        assertNull(GoldenFiles.manifest().site()); // format 3: none
    }

    @Test
    void calibratedPipelineMatchesPython() {
        BundleManifest m = calibrated();
        boolean labelChanged = false;
        for (JsonObject want : objects(site(), "samples")) {
            String name = want.string("file");
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(name));
            PipelineTest.RecordedRunner runner = new PipelineTest.RecordedRunner(recorded(name));
            Pipeline pipeline = new Pipeline(m, runner);
            assertNotNull(pipeline.site());
            Prediction p = pipeline.predict(image);
            assertPrediction(want, p, m, name);
            // The parent (the default bundle) on the same recorded outputs: what ignoring the section gives.
            JsonObject parent = want.object("parent");
            Prediction q = new Pipeline(GoldenFiles.manifest(), new PipelineTest.RecordedRunner(recorded(name)))
                    .predict(image);
            assertEquals(parent.string("label"), q.label(), name + " parent");
            Diff.assertWithin(EnsembleTest.PROBS_TOLERANCE, Diff.maxAbs(parent.numberArray("probs"), q.probs()),
                    name + " parent probabilities");
            assertTrue(Diff.maxAbs(p.probs(), q.probs()) > 0.02, name + ": the calibration changed nothing");
            labelChanged |= !p.label().equals(q.label());
        }
        assertTrue(labelChanged, "the calibration changed no label");
    }

    @Test
    void aChosenSubsetKeepsTheHeadsNotTheSiteTemperature() {
        BundleManifest m = calibrated();
        JsonObject subset = site().object("subset");
        List<String> members = subset.stringList("members");
        for (JsonObject want : objects(subset, "samples")) {
            String name = want.string("file");
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(name));
            Pipeline pipeline = new Pipeline(m, new PipelineTest.RecordedRunner(recorded(name)), members);
            assertEquals("mean", pipeline.ensemble().method());
            assertNull(pipeline.site());
            assertPrediction(want, pipeline.predict(image), m, name + " (subset)");
        }
    }

    private static void assertPrediction(JsonObject want, Prediction p, BundleManifest m, String name) {
        assertEquals(want.string("label"), p.label(), name);
        Diff.assertWithin(EnsembleTest.PROBS_TOLERANCE, Diff.maxAbs(want.numberArray("probs"), p.probs()),
                name + " calibrated probabilities");
        JsonObject perModel = want.object("per_model");
        assertEquals(new ArrayList<>(perModel.keys()), new ArrayList<>(p.perModel().keySet()), name);
        for (String member : perModel.keys()) {
            double[] expected = perModel.numberArray(member);
            float[] got = p.perModel().get(member);
            double[] asDouble = new double[got.length];
            for (int i = 0; i < got.length; i++) {
                asDouble[i] = got[i];
            }
            Diff.assertWithin(EnsembleTest.PROBS_TOLERANCE, Diff.maxAbs(expected, asDouble),
                    name + " " + member + " refitted head");
        }
        assertEquals(want.raw("referral") == null ? null : want.string("referral"), p.referral(), name);
        assertNotNull(p.cam(), name);
        Diff.assertWithin(HeatMapTest.CAM_TOLERANCE, Diff.maxAbs(GoldenArray.of(want, "cam").floats(),
                p.cam().pixels()), name + " heat map of the calibrated label");
    }

    @Test
    void refusesTheManifestsPythonRefuses() {
        Map<String, Object> base = site().object("manifest").asMap();
        List<JsonObject> cases = objects(site(), "manifests");
        assertTrue(cases.size() >= 20);
        for (JsonObject c : cases) {
            Map<String, Object> m = deepCopy(base);
            for (JsonObject op : objects(c, "ops")) {
                apply(m, op);
            }
            String name = c.string("name");
            if (c.raw("python_error") == null) {
                BundleManifest parsed = BundleManifest.fromJson(m);
                assertEquals(4, parsed.formatVersion(), name);
                continue;
            }
            BundleFormatException e = assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m), name);
            assertNotNull(e.expected(), name + ": " + e.getMessage());
            String python = c.string("python_error");
            if (!python.contains("follow its schema")) { // the same sentence as Python's
                String sentence = python.split(";")[0];
                sentence = sentence.substring(sentence.lastIndexOf(": ") + 2);
                assertTrue(e.getMessage().contains(sentence), name + ": " + e.getMessage() + " vs " + python);
            }
            System.out.println("REFUSED " + name + ": " + e.getMessage());
        }
    }

    @Test
    void refusesALaterFormatAndASiteOutsideFormat4() {
        Map<String, Object> m = deepCopy(site().object("manifest").asMap());
        m.put("format_version", 5L);
        BundleFormatException e = assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m));
        assertEquals("format_version", e.field());
        assertEquals("unsupported bundle format", e.problem());
        assertEquals("format_version in (1, 2, 3, 4)", e.expected());
        assertEquals("format_version 5", e.received());
        m.put("format_version", 3L);
        e = assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m));
        assertEquals("site calibration and format version disagree", e.problem());
        m.put("format_version", 4L);
        m.remove("site");
        e = assertThrows(BundleFormatException.class, () -> BundleManifest.fromJson(m));
        assertEquals("format_version 4, no site section", e.received());
    }

    @SuppressWarnings("unchecked")
    private static <T> T deepCopy(T value) {
        if (value instanceof Map) {
            Map<String, Object> out = new LinkedHashMap<>();
            for (Map.Entry<String, Object> e : ((Map<String, Object>) value).entrySet()) {
                out.put(e.getKey(), deepCopy(e.getValue()));
            }
            return (T) out;
        }
        if (value instanceof List) {
            List<Object> out = new ArrayList<>();
            for (Object item : (List<Object>) value) {
                out.add(deepCopy(item));
            }
            return (T) out;
        }
        return value;
    }

    /** One edit of {@code golden_site.py}'s cases: set, delete (a key or a list item) or append. */
    @SuppressWarnings("unchecked")
    private static void apply(Map<String, Object> root, JsonObject op) {
        List<Object> path = op.array("path");
        Object node = root;
        for (int i = 0; i < path.size() - 1; i++) {
            node = child(node, path.get(i));
        }
        Object last = path.get(path.size() - 1);
        switch (op.string("op")) {
            case "set":
                ((Map<String, Object>) node).put((String) last, deepCopy(op.raw("value")));
                break;
            case "delete":
                if (last instanceof Long) {
                    ((List<Object>) node).remove((int) (long) (Long) last);
                } else {
                    ((Map<String, Object>) node).remove(last);
                }
                break;
            case "append":
                ((List<Object>) child(node, last)).add(op.raw("value"));
                break;
            default:
                throw new AssertionError("unknown op " + op.string("op"));
        }
    }

    @SuppressWarnings("unchecked")
    private static Object child(Object node, Object key) {
        return key instanceof Long ? ((List<Object>) node).get((int) (long) (Long) key)
                : ((Map<String, Object>) node).get(key);
    }
}
