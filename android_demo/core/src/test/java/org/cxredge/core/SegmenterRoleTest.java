package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * A segmenter of role {@code evidence} against the Python runtime ({@code role.json} of the extra golden
 * vectors, {@code tools/golden_role.py}): the {@code paper} bundle's real segmenter and members with only
 * the role changed. The segmenter runs and its mask judges the heat map (lung fraction, flag, outline),
 * but the classifiers see the full image: the runner checks that every model is handed exactly the input
 * tensor Python gave LiteRT, so a pipeline that cropped anyway fails here.
 */
class SegmenterRoleTest {
    private static JsonObject role() {
        return JsonObject.of(GoldenFiles.extra("role.json"), "role");
    }

    private static CropBox box(int[] b) {
        return new CropBox(b[0], b[1], b[2], b[3]);
    }

    private static List<JsonObject> samples() {
        List<JsonObject> out = new ArrayList<>();
        for (Object item : role().array("samples")) {
            out.add(JsonObject.of(item, "sample"));
        }
        return out;
    }

    @Test
    void readsTheRole() {
        BundleManifest m = BundleManifest.fromJson(role().object("manifest").asMap());
        assertEquals(SegmenterEntry.ROLE_EVIDENCE, m.segmenter().role());
        assertFalse(m.segmenter().crops());
        assertNotNull(m.lungEvidence());
    }

    @Test
    void classifiersSeeTheFullImageAndTheMaskJudgesTheEvidence() {
        BundleManifest m = BundleManifest.fromJson(role().object("manifest").asMap());
        PreprocessSpec spec = m.preprocess();
        Set<Boolean> flagged = new HashSet<>();
        Set<Boolean> referred = new HashSet<>();
        for (JsonObject want : samples()) {
            String name = want.string("file");
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(name));
            // Checks every input tensor: the segmenter's own, and the members' full-image input.
            PipelineTest.RecordedRunner runner = new PipelineTest.RecordedRunner(want);
            Prediction p = new Pipeline(m, runner).predict(image);
            List<String> calls = new ArrayList<>(Arrays.asList(m.segmenter().name()));
            calls.addAll(m.ensemble().members());
            assertEquals(calls, runner.calls, name);

            // No crop: the same status, reason and box as a bundle without a segmenter.
            assertEquals(want.string("crop"), p.cropStatus(), name);
            assertEquals("none", p.cropStatus(), name);
            assertEquals(want.string("crop_reason"), p.cropReason(), name);
            assertNull(want.raw("crop_box"), name);
            assertNull(p.cropBox(), name);
            CropBox full = new Preprocessor(spec).region(image.width(), image.height(), null);
            assertEquals(box(want.intArray("cam_region")), p.camRegion(), name);
            assertEquals(full, p.camRegion(), name);
            // The segmenter's own verdict on its mask is still there.
            JsonObject decision = want.object("decision");
            assertNotNull(p.crop(), name);
            assertEquals(decision.string("status"), p.crop().status(), name);
            assertEquals(decision.string("reason"), p.crop().reason(), name);
            assertEquals(box(decision.intArray("box")), p.crop().box(), name);

            assertEquals(want.string("label"), p.label(), name);
            Diff.assertWithin(EnsembleTest.PROBS_TOLERANCE, Diff.maxAbs(want.numberArray("probs"), p.probs()),
                    name + " probabilities");
            for (String member : m.ensemble().members()) {
                double[] mine = new double[p.labels().size()];
                for (int i = 0; i < mine.length; i++) {
                    mine[i] = p.perModel().get(member)[i];
                }
                Diff.assertWithin(EnsembleTest.PROBS_TOLERANCE,
                        Diff.maxAbs(want.object("per_model").numberArray(member), mine), name + " " + member);
            }
            Diff.assertWithin(HeatMapTest.CAM_TOLERANCE, Diff.maxAbs(GoldenArray.of(want, "cam").floats(),
                    p.cam().pixels()), name + " heat map (feature resolution)");
            Diff.assertWithin(HeatMapTest.CAM_TOLERANCE, Diff.maxAbs(GoldenArray.of(want, "heatmap").floats(),
                    p.heatMap(image.width(), image.height()).pixels()), name + " heat map (image resolution)");

            // The lung mask judges the evidence on the full-image heat map, and outlines the lungs.
            assertEquals(CropDecision.LUNG, p.crop().status(), name);
            assertNotNull(p.lungFraction(), name);
            Diff.assertWithin(EvidenceTest.FRACTION_TOLERANCE,
                    Math.abs(want.number("lung_fraction") - p.lungFraction()), name + " lung fraction");
            assertEquals(want.stringList("flags"), p.flags(), name);
            assertEquals(want.raw("referral") == null ? null : want.string("referral"), p.referral(), name);
            assertEquals(box(want.intArray("lung_region")), p.lungRegion(), name);
            Diff.assertIdentical(GoldenArray.of(want, "lung_mask").bytes(), p.lungMask().pixels(), name + " lung mask");
            assertTrue(p.timingsMs().keySet().containsAll(Arrays.asList("segment", "lung_fraction")), name);
            flagged.add(!p.flags().isEmpty());
            referred.add(p.referral() != null);

            // What a pipeline that ignored the role would have computed differs: the test can tell.
            JsonObject cropping = want.object("cropping");
            assertEquals(CropDecision.LUNG, cropping.string("crop"), name);
            assertTrue(Diff.maxAbs(cropping.numberArray("probs"), p.probs()) > EnsembleTest.PROBS_TOLERANCE, name);
        }
        Set<Boolean> both = new HashSet<>(Arrays.asList(true, false));
        assertEquals(both, flagged);
        assertEquals(both, referred);
    }

    @Test
    void aCroppingSegmenterStillCrops() {
        // The same manifest with role "crop": the classifiers see the decision's box, and the runner (which
        // checks inputs) refuses the lung crop because the recorded inputs are the full image's.
        JsonObject r = role();
        Map<String, Object> json = new LinkedHashMap<>(r.object("manifest").asMap());
        Map<String, Object> seg = new LinkedHashMap<>(r.object("manifest").object("segmenter").asMap());
        seg.put("role", SegmenterEntry.ROLE_CROP);
        json.put("segmenter", seg);
        BundleManifest m = BundleManifest.fromJson(json);
        assertTrue(m.segmenter().crops());
        for (JsonObject want : samples()) {
            String name = want.string("file");
            FloatImage image = GoldenFiles.readGreyPng(GoldenFiles.samples().resolve(name));
            PipelineTest.RecordedRunner runner = new PipelineTest.RecordedRunner(want);
            runner.checkInputs = false;
            Prediction p = new Pipeline(m, runner).predict(image);
            CropBox decided = box(want.object("decision").intArray("box"));
            assertEquals(CropDecision.LUNG, p.cropStatus(), name);
            assertEquals(decided, p.cropBox(), name);
            assertEquals(decided, p.camRegion(), name);
            assertEquals(box(want.object("cropping").intArray("crop_box")), p.cropBox(), name);
        }
    }
}
