package org.cxredge.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Combining members: the committed golden ensemble and every combiner against Python. */
class EnsembleTest {
    static final double PROBS_TOLERANCE = 1e-6;

    @Test
    void committedGoldenEnsembleFromRecordedMemberOutputs() {
        BundleManifest m = GoldenFiles.manifest();
        for (String name : GoldenFiles.goldenNames()) {
            JsonObject g = GoldenFiles.goldenSample(name);
            JsonObject models = g.object("models");
            List<String> members = m.ensemble().members();
            double[][] memberProbs = new double[members.size()][];
            for (int i = 0; i < members.size(); i++) {
                ModelEntry entry = m.model(members.get(i));
                double[] raw = models.object(entry.name()).numberArray("probs");
                float[] p = new float[raw.length];
                for (int k = 0; k < p.length; k++) {
                    p[k] = (float) raw[k]; // the recorded float32 outputs
                }
                float[] renorm = Quantization.renormalize(p, entry.outputs().get("probs"));
                memberProbs[i] = new double[renorm.length];
                for (int k = 0; k < renorm.length; k++) {
                    memberProbs[i][k] = renorm[k];
                }
            }
            double[] probs = Ensemble.apply(m.ensemble(), memberProbs);
            JsonObject expected = g.object("ensemble");
            Diff.assertWithin(PROBS_TOLERANCE, Diff.maxAbs(expected.numberArray("probs"), probs),
                    name + " ensemble probabilities");
            assertEquals(expected.string("label"), m.labels().get(Ensemble.argmax(probs)), name);
        }
    }

    @Test
    void everyCombinerMatchesPython() {
        double worst = 0;
        int n = 0;
        for (Object item : (List<?>) GoldenFiles.extra("ensemble.json")) {
            JsonObject c = JsonObject.of(item, "case");
            double[][] probs = GoldenArray.of(c, "probs").matrix();
            double[] weights = c.raw("weights") == null ? null : c.numberArray("weights");
            Stacker stacker = c.raw("stacking") == null ? null : Stacker.fromJson(c.object("stacking"));
            double[] out = Ensemble.combine(probs, c.string("method"), weights, stacker);
            if (c.number("temperature") != 1.0) {
                out = Ensemble.applyTemperature(out, c.number("temperature"));
            }
            double[] expected = c.numberArray("expected");
            double d = Diff.maxAbs(expected, out);
            worst = Math.max(worst, d);
            assertEquals(Ensemble.argmax(expected), Ensemble.argmax(out), c.string("method"));
            n++;
        }
        assertEquals(33, n);
        Diff.assertWithin(1e-12, worst, "ensemble combiners (all methods, temperatures)");
    }

    @Test
    void voteBreaksTiesByMeanProbability() {
        double[][] probs = {{0.6, 0.3, 0.1}, {0.2, 0.7, 0.1}};
        double[] v = Ensemble.vote(probs);
        assertEquals(1, Ensemble.argmax(v)); // mean 0.5 for class 1 beats 0.4 for class 0
        assertEquals(1.0, v[0] + v[1] + v[2], 1e-12);
        double[][] equal = {{0.5, 0.5, 0.0}};
        assertEquals(0, Ensemble.argmax(Ensemble.vote(equal))); // then the lowest index
    }

    @Test
    void configChecksMirrorPython() {
        BundleFormatException e = assertThrows(BundleFormatException.class,
                () -> new EnsembleConfig("weighted", Arrays.asList("a", "b"), new double[] {1}, null, 1.0));
        assertEquals("2 weights", e.expected());
        assertThrows(BundleFormatException.class,
                () -> Ensemble.combine(new double[][] {{1, 0}}, "weighted", new double[] {-1}, null));
        assertThrows(BundleFormatException.class, () -> Ensemble.applyTemperature(new double[] {1}, 0));
        assertArrayEquals(new double[] {0.25, 0.75}, Ensemble.mean(new double[][] {{0.5, 0.5}, {0.0, 1.0}}));
    }
}
