package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Heat-map maths against {@code cxr_edge/ops/cam.py}, and the golden samples' heat maps. */
class HeatMapTest {
    /** CAM is computed in double like numpy and stored as float32: differences are float32 rounding. */
    static final double CAM_TOLERANCE = 1e-6;

    @Test
    void camAverageAndPlacementMatchPython() {
        JsonObject c = JsonObject.of(((List<?>) GoldenFiles.extra("cam.json")).get(0), "cam");
        double worst = 0;
        for (Object item : c.array("cams")) {
            JsonObject k = JsonObject.of(item, "case");
            GoldenArray f = GoldenArray.of(k, "features");
            FloatImage cam = HeatMap.classActivationMap(f.floats(), f.dim(0), f.dim(1), k.numberMatrix("weights"),
                    k.integer("class_index"));
            worst = Math.max(worst, Diff.maxAbs(GoldenArray.of(k, "expected").floats(), cam.pixels()));
        }
        Diff.assertWithin(CAM_TOLERANCE, worst, "class activation maps (synthetic)");
        for (Object item : c.array("averages")) {
            JsonObject k = JsonObject.of(item, "case");
            List<FloatImage> maps = new ArrayList<>();
            for (Object m : k.array("maps")) {
                maps.add(GoldenArray.of(m).floatImage());
            }
            Diff.assertBitIdentical(GoldenArray.of(k, "expected").floats(), HeatMap.average(maps).pixels(),
                    maps.size() + " maps averaged");
        }
        for (Object item : c.array("placements")) {
            JsonObject k = JsonObject.of(item, "case");
            int[] r = k.intArray("region");
            FloatImage placed = HeatMap.place(GoldenArray.of(k, "cam").floatImage(), k.integer("width"),
                    k.integer("height"), new CropBox(r[0], r[1], r[2], r[3]));
            Diff.assertBitIdentical(GoldenArray.of(k, "expected").floats(), placed.pixels(), "placement");
        }
    }

    @Test
    void goldenHeatMapsFromRecordedFeatures() {
        BundleManifest m = GoldenFiles.manifest();
        JsonObject extra = JsonObject.of(GoldenFiles.extra("samples.json"), "");
        for (Object item : extra.array("samples")) {
            JsonObject s = JsonObject.of(item, "sample");
            JsonObject g = GoldenFiles.goldenSample(s.string("golden"));
            int label = m.labels().indexOf(g.object("ensemble").string("label"));
            List<FloatImage> maps = new ArrayList<>();
            for (String member : m.ensemble().members()) {
                ModelEntry e = m.model(member);
                GoldenArray f = GoldenArray.of(s.object("models").object(member).object("dequantized"), "features");
                maps.add(HeatMap.classActivationMap(f.floats(), f.dim(0), f.dim(1), e.camWeights(), label));
            }
            FloatImage cam = HeatMap.average(maps);
            GoldenArray committed = GoldenArray.of(g, "cam");
            assertEquals(committed.dim(0), cam.height());
            Diff.assertWithin(CAM_TOLERANCE, Diff.maxAbs(committed.floats(), cam.pixels()),
                    s.string("golden") + " heat map (committed golden cam)");
            GoldenArray image = GoldenArray.of(s, "image");
            FloatImage placed = HeatMap.place(cam, image.dim(1), image.dim(0), GoldenFiles.pipelineRegion(s));
            Diff.assertWithin(CAM_TOLERANCE, Diff.maxAbs(GoldenArray.of(s, "heatmap").floats(), placed.pixels()),
                    s.string("golden") + " heat map placed on the image");
        }
    }

    @Test
    void allNegativeIsAllZero() {
        float[] f = {1f, 1f, 1f, 1f};
        FloatImage cam = HeatMap.classActivationMap(f, 2, 2, new double[][] {{-1.0}}, 0);
        for (float v : cam.pixels()) {
            assertEquals(0f, v);
        }
    }

    @Test
    void overlayWithinOneLevelOfPython() {
        JsonObject extra = JsonObject.of(GoldenFiles.extra("samples.json"), "");
        for (Object item : extra.array("samples")) {
            JsonObject s = JsonObject.of(item, "sample");
            FloatImage image = GoldenArray.of(s, "image").floatImage();
            FloatImage heat = GoldenArray.of(s, "heatmap").floatImage();
            int[] argb = HeatMapOverlay.argb(image, heat, HeatMapOverlay.DEFAULT_ALPHA);
            byte[] bgr = GoldenArray.of(s, "overlay_bgr").bytes();
            int worst = 0;
            for (int i = 0; i < argb.length; i++) {
                int[] mine = {argb[i] & 0xFF, (argb[i] >> 8) & 0xFF, (argb[i] >> 16) & 0xFF};
                for (int c = 0; c < 3; c++) {
                    worst = Math.max(worst, Math.abs(mine[c] - (bgr[3 * i + c] & 0xFF)));
                }
            }
            Diff.assertWithin(1, worst, s.string("golden") + " overlay (8-bit levels, display only)");
        }
    }
}
