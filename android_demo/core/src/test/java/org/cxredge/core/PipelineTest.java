package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * The whole pipeline, decoded image to label, probabilities and heat map, with a {@link ModelRunner}
 * that replays the model outputs recorded by the Python runtime (and checks that it is handed
 * exactly the input tensors Python gave LiteRT).
 */
class PipelineTest {
    /** Replays recorded outputs of one golden sample. */
    static final class RecordedRunner implements ModelRunner {
        final JsonObject models;
        final List<String> calls = new ArrayList<>();
        boolean checkInputs = true;
        final Map<String, FloatImage> masks = new HashMap<>();

        RecordedRunner(JsonObject sample) {
            this.models = sample.object("models");
        }

        @Override
        public Map<String, RawTensor> run(ModelFile model, RawTensor input) {
            calls.add(model.name());
            if (masks.containsKey(model.name())) {
                TensorSpec spec = model.outputs().get("mask");
                assertEquals(model.input().elementCount(), input.spec().elementCount());
                Map<String, RawTensor> out = new LinkedHashMap<>();
                out.put("mask", RawTensor.ofFloats(spec, masks.get(model.name()).pixels()));
                return out;
            }
            JsonObject m = models.object(model.name());
            GoldenArray expectedInput = GoldenArray.of(m, "input");
            if (checkInputs) {
                if (input.spec().isQuantized()) {
                    Diff.assertIdentical(expectedInput.bytes(), input.bytes(), model.name() + " quantised input");
                } else {
                    Diff.assertBitIdentical(expectedInput.floats(), input.floats(), model.name() + " input");
                }
            }
            Map<String, RawTensor> out = new LinkedHashMap<>();
            JsonObject raw = m.object("raw");
            for (Map.Entry<String, TensorSpec> e : model.outputs().entrySet()) {
                GoldenArray a = GoldenArray.of(raw, e.getKey());
                out.put(e.getKey(), e.getValue().isQuantized() ? RawTensor.ofBytes(e.getValue(), a.bytes())
                        : RawTensor.ofFloats(e.getValue(), a.floats()));
            }
            return out;
        }
    }

    private static List<JsonObject> samples() {
        List<JsonObject> out = new ArrayList<>();
        for (Object item : JsonObject.of(GoldenFiles.extra("samples.json"), "").array("samples")) {
            out.add(JsonObject.of(item, "sample"));
        }
        return out;
    }

    @Test
    void decodedImageToLabelProbabilitiesAndHeatMap() {
        BundleManifest m = GoldenFiles.manifest();
        for (JsonObject s : samples()) {
            JsonObject g = GoldenFiles.goldenSample(s.string("golden"));
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(s.string("file")));
            RecordedRunner runner = new RecordedRunner(s);
            Prediction p = new Pipeline(m, runner).predict(image);
            String name = s.string("golden");
            List<String> expectedCalls = new ArrayList<>();
            if (m.segmenter() != null) {
                expectedCalls.add(m.segmenter().name()); // segment first, then classify (the lung crop)
            }
            expectedCalls.addAll(m.ensemble().members());
            assertEquals(expectedCalls, runner.calls);
            Diff.assertIdentical(GoldenArray.of(g, "preprocessed_u8").bytes(), p.preprocessed().u8().pixels(), name);
            assertEquals(g.object("ensemble").string("label"), p.label(), name);
            Diff.assertWithin(EnsembleTest.PROBS_TOLERANCE,
                    Diff.maxAbs(g.object("ensemble").numberArray("probs"), p.probs()), name + " pipeline probabilities");
            for (String member : m.ensemble().members()) {
                Diff.assertBitIdentical(
                        GoldenArray.of(s.object("models").object(member), "probs_normalised").floats(),
                        p.perModel().get(member), name + " " + member + " probabilities");
            }
            assertNotNull(p.cam());
            Diff.assertWithin(HeatMapTest.CAM_TOLERANCE, Diff.maxAbs(GoldenArray.of(g, "cam").floats(),
                    p.cam().pixels()), name + " pipeline heat map (feature resolution)");
            FloatImage heat = p.heatMap(image.width(), image.height());
            Diff.assertWithin(HeatMapTest.CAM_TOLERANCE, Diff.maxAbs(GoldenArray.of(s, "heatmap").floats(),
                    heat.pixels()), name + " pipeline heat map (image resolution)");
            assertEquals(GoldenFiles.goldenCrops(g) ? g.object("segmenter").object("crop").string("status") : "none",
                    p.cropStatus());
            assertEquals(GoldenFiles.goldenCrop(g), p.cropBox());
            assertTrue(p.timingsMs().keySet().containsAll(Arrays.asList("preprocess", "combine", "heatmap")));
        }
    }

    @Test
    void everyMemberGetsPythonsInputTensor() {
        BundleManifest m = GoldenFiles.manifest();
        List<String> all = new ArrayList<>();
        for (ModelEntry e : m.models()) {
            all.add(e.name());
        }
        for (JsonObject s : samples()) {
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(s.string("file")));
            RecordedRunner runner = new RecordedRunner(s);
            Pipeline pipeline = new Pipeline(m, runner, all);
            assertEquals("mean", pipeline.ensemble().method());
            Prediction p = pipeline.predict(image);
            assertEquals(all, runner.calls.subList(m.segmenter() != null ? 1 : 0, runner.calls.size()));
            for (String member : all) {
                Diff.assertBitIdentical(
                        GoldenArray.of(s.object("models").object(member), "probs_normalised").floats(),
                        p.perModel().get(member), s.string("golden") + " " + member + " probabilities");
            }
        }
    }

    @Test
    void segmenterBundleCropsToTheLungs() {
        Map<String, Object> json = new LinkedHashMap<>(JsonObject.of(
                Json.parse(GoldenFiles.text(GoldenFiles.bundle().resolve("manifest.json"))), "").asMap());
        json.put("segmenter", Json.parse(BundleManifestTest.SEGMENTER));
        BundleManifest m = BundleManifest.fromJson(json);
        JsonObject lungs = null;
        for (Object item : (List<?>) GoldenFiles.extra("lungcrop.json")) {
            JsonObject c = JsonObject.of(item, "case");
            if ("two lungs".equals(c.string("name"))) {
                lungs = c;
            }
        }
        assertNotNull(lungs);
        for (JsonObject s : samples()) {
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(s.string("file")));
            RecordedRunner runner = new RecordedRunner(s);
            runner.checkInputs = false; // the classifiers now see the lung crop, not the recorded input
            runner.masks.put("unet16-int8", GoldenArray.of(lungs, "prob").floatImage());
            Prediction p = new Pipeline(m, runner).predict(image);
            List<String> expectedCalls = new ArrayList<>(Arrays.asList("unet16-int8"));
            expectedCalls.addAll(m.ensemble().members());
            assertEquals(expectedCalls, runner.calls);
            assertEquals("lung", p.cropStatus());
            // "two lungs" was decided for a 512x479 image; the boxes scale with the image.
            if (image.width() == 512 && image.height() == 479) {
                int[] b = lungs.intArray("box");
                assertEquals(new CropBox(b[0], b[1], b[2], b[3]), p.crop().box());
            }
            int[] box = s.intArray("box");
            CropBox lungBox = new CropBox(box[0], box[1], box[2], box[3]);
            ByteImage u8 = new Preprocessor(m.preprocess()).u8(image, lungBox);
            Diff.assertIdentical(GoldenArray.of(s, "box_u8").bytes(), u8.pixels(), s.string("file") + " lung-box u8");
            assertEquals(p.crop().box(), p.camRegion());
            assertTrue(p.timingsMs().containsKey("segment"));
        }
    }

    @Test
    void refusesRunnerOutputsThatDoNotFitTheManifest() {
        BundleManifest m = GoldenFiles.manifestWithoutSegmenter(); // the classifiers' outputs are checked
        FloatImage image = new FloatImage(300, 280);
        ModelRunner nothing = (model, input) -> new HashMap<>();
        ModelOutputException e = assertThrows(ModelOutputException.class, () -> new Pipeline(m, nothing).predict(image));
        assertTrue(e.getMessage().contains("gave no probs output"), e.getMessage());

        ModelRunner wrongType = (model, input) -> {
            Map<String, RawTensor> out = new HashMap<>();
            // One value too many: wrong for every member, whatever its type (int8 or fp32 probabilities).
            TensorSpec bad = new TensorSpec(new int[] {1, 4}, DType.INT8, 0.1, 0);
            out.put("probs", RawTensor.ofBytes(bad, new byte[4]));
            return out;
        };
        e = assertThrows(ModelOutputException.class, () -> new Pipeline(m, wrongType).predict(image));
        List<String> memberSpecs = new ArrayList<>();
        for (String member : m.ensemble().members()) {
            memberSpecs.add(m.model(member).outputs().get("probs").toString());
        }
        assertTrue(memberSpecs.contains(e.expected()), e.expected()); // the first member that ran

        ModelRunner probsOnly = (model, input) -> {
            Map<String, RawTensor> out = new HashMap<>();
            TensorSpec spec = model.outputs().get("probs");
            float[] v = {0.2f, 0.5f, 0.3f};
            if (spec.isQuantized()) { // int8 members (int8 where the gate passed)
                byte[] q = new byte[v.length];
                for (int i = 0; i < v.length; i++) {
                    q[i] = (byte) Math.max(-128, Math.min(127, Math.round(v[i] / spec.scale()) + spec.zeroPoint()));
                }
                out.put("probs", RawTensor.ofBytes(spec, q));
            } else {
                out.put("probs", RawTensor.ofFloats(spec, v));
            }
            return out;
        };
        Prediction p = new Pipeline(m, probsOnly).predict(image);
        assertNull(p.cam());
        assertNull(p.heatMap(300, 280));
        assertEquals("normal", p.label());
        assertThrows(BundleFormatException.class, () -> new Pipeline(m, probsOnly, Arrays.asList("nope")));
    }
}
