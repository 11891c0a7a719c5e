package org.cxredge.core;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * decode -> (segment -> crop) -> preprocess -> classify each member -> combine -> heat map: the
 * Python {@code Predictor.predict_image}, with model execution behind a {@link ModelRunner}; then the
 * referral band's referral and, with a segmenter, the heat map's lung fraction and the flag
 * "evidence outside the lungs". A site-calibrated bundle ({@link SiteCalibration}, format 4) changes two
 * steps: members with a refitted head take their probabilities from their {@code features} output, and
 * the combined probabilities get the site's temperature and bias; label, heat map and referral follow.
 *
 * <p>The segmenter's role ({@link SegmenterEntry#crops()}) decides what the classifiers see: the lung crop
 * ({@code crop}, the paper's system) or the full image ({@code evidence}: the border crop of a bundle
 * without a segmenter; the lung mask then only judges the heat map, on the full-image region).
 *
 * <p>Not thread-safe if the runner is not; one pipeline per worker thread.
 */
public final class Pipeline {
    private final BundleManifest manifest;
    private final ModelRunner runner;
    private final List<ModelEntry> members;
    private final EnsembleConfig ensemble;
    private final SiteCalibration site;
    private final SiteCalibration heads;
    private final Preprocessor preprocessor;
    private final Preprocessor segmenterPreprocessor;
    private final LungCrop lungCrop;

    /** A pipeline running the bundle's ensemble. */
    public Pipeline(BundleManifest manifest, ModelRunner runner) {
        this(manifest, runner, null);
    }

    /**
     * A pipeline running chosen members; a subset other than the bundle's members is averaged
     * (weights, stacker and temperature were fitted for the full ensemble, and so were a site
     * calibration's temperature and bias; its member heads still apply), as in Python.
     *
     * @param members model names, or null for the bundle's ensemble members
     */
    public Pipeline(BundleManifest manifest, ModelRunner runner, List<String> members) {
        this.manifest = manifest;
        this.runner = runner;
        EnsembleConfig config = manifest.ensemble();
        List<String> names = members == null || members.isEmpty() ? config.members() : members;
        if (names.isEmpty()) {
            throw new BundleFormatException("models", "bundle holds no classifiers", "a bundle with models",
                    "a segmenter-only bundle");
        }
        List<ModelEntry> entries = new ArrayList<>();
        for (String name : names) {
            entries.add(manifest.model(name));
        }
        this.members = entries;
        boolean same = names.equals(config.members());
        this.ensemble = same ? config : EnsembleConfig.meanOf(names, config.abstain());
        SiteCalibration calibration = manifest.site();
        this.site = same ? calibration : null;
        this.heads = calibration != null && !calibration.heads().isEmpty() ? calibration : null;
        this.preprocessor = new Preprocessor(manifest.preprocess());
        SegmenterEntry seg = manifest.segmenter();
        this.segmenterPreprocessor = seg == null ? null : new Preprocessor(seg.preprocess());
        this.lungCrop = seg == null ? null : new LungCrop(seg.crop());
    }

    /** The models this pipeline runs, in order. */
    public List<ModelEntry> members() {
        return members;
    }

    /** The combiner in use ({@code mean} for a chosen subset). */
    public EnsembleConfig ensemble() {
        return ensemble;
    }

    /** The site calibration applied after the combiner, or null (none, or a chosen subset of members). */
    public SiteCalibration site() {
        return site;
    }

    /**
     * Classifies one decoded image.
     *
     * @param image greyscale image, values in [0, 1]
     * @throws InputImageException unusable image
     * @throws ModelOutputException the runner returned outputs that do not fit the manifest
     */
    public Prediction predict(FloatImage image) {
        Map<String, Double> timings = new LinkedHashMap<>();
        CropDecision crop = null;
        ByteImage lungMask = null;
        if (manifest.segmenter() != null) {
            long t = System.nanoTime();
            FloatImage prob = segmenterProbabilities(image);
            crop = lungCrop.decide(prob, image.width(), image.height());
            // The crop's cleaned mask when it used the lung threshold (the default), else its own.
            lungMask = manifest.segmenter().crop().threshold() == HeatMap.LUNG_THRESHOLD ? crop.mask()
                    : LungCrop.cleanMask(prob, HeatMap.LUNG_THRESHOLD, new int[1]);
            timings.put("segment", ms(t));
        }
        // A segmenter of role "evidence" only checks the heat map: the classifiers see the full image.
        boolean cropped = crop != null && manifest.segmenter().crops();
        long t0 = System.nanoTime();
        PreprocessedImage x = preprocessor.run(image, cropped ? crop.box() : null);
        timings.put("preprocess", ms(t0));

        Map<String, float[]> perModel = new LinkedHashMap<>();
        List<float[]> featureMaps = new ArrayList<>();
        List<ModelEntry> withFeatures = new ArrayList<>();
        double[][] memberProbs = new double[members.size()][];
        for (int m = 0; m < members.size(); m++) {
            ModelEntry entry = members.get(m);
            long t = System.nanoTime();
            Map<String, RawTensor> outputs = runModel(entry, x.inputFor(entry.input().dim(3)));
            float[] probs = Quantization.renormalize(output(entry, outputs, "probs"), entry.outputs().get("probs"));
            // Features feed the heat map and, with a site calibration, the member's refitted head.
            boolean wanted = entry.hasHeatMap() || (heads != null && heads.heads().containsKey(entry.name()));
            float[] features = wanted && outputs.containsKey("features") ? output(entry, outputs, "features") : null;
            memberProbs[m] = heads == null ? toDouble(probs)
                    : heads.memberProbs(entry.name(), toDouble(probs), features);
            perModel.put(entry.name(), heads == null ? probs : toFloat(memberProbs[m]));
            if (entry.hasHeatMap() && features != null) {
                withFeatures.add(entry);
                featureMaps.add(features);
            }
            timings.put(entry.name(), ms(t));
        }
        long t = System.nanoTime();
        double[] combined = Ensemble.apply(ensemble, memberProbs);
        double[] probs = site == null ? combined : site.apply(combined);
        String referral = ensemble.referral(probs);
        timings.put("combine", ms(t));

        FloatImage cam = null;
        Double fraction = null;
        if (!featureMaps.isEmpty()) {
            t = System.nanoTime();
            int index = Ensemble.argmax(probs);
            List<FloatImage> maps = new ArrayList<>();
            for (int i = 0; i < featureMaps.size(); i++) {
                TensorSpec spec = withFeatures.get(i).outputs().get("features");
                maps.add(HeatMap.classActivationMap(featureMaps.get(i), spec.dim(1), spec.dim(2),
                        withFeatures.get(i).camWeights(), index));
            }
            cam = HeatMap.average(maps);
            timings.put("heatmap", ms(t));
            if (crop != null && CropDecision.LUNG.equals(crop.status())) {
                t = System.nanoTime();
                CropBox segRegion = segmenterPreprocessor.region(image.width(), image.height(), null);
                PreprocessSpec spec = manifest.preprocess();
                fraction = HeatMap.lungFraction(cam, x.region(), lungMask, segRegion, spec.width(), spec.height());
                timings.put("lung_fraction", ms(t));
            }
        }
        LungEvidence evidence = manifest.lungEvidence();
        List<String> flags = new ArrayList<>();
        if (evidence != null && fraction != null && fraction < evidence.minFraction()) {
            flags.add(HeatMap.FLAG_OUTSIDE_LUNGS);
        }
        boolean lungs = crop != null && CropDecision.LUNG.equals(crop.status()) && lungMask != null;
        CropBox lungRegion = lungs ? segmenterPreprocessor.region(image.width(), image.height(), null) : null;
        return new Prediction(manifest.labels(), probs, perModel, crop, cropped, x, cam, timings, referral, fraction,
                flags, lungs ? lungMask : null, lungRegion);
    }

    /** The segmenter stage: lung probabilities, then the crop rule. */
    public CropDecision segment(FloatImage image) {
        return lungCrop.decide(segmenterProbabilities(image), image.width(), image.height());
    }

    /** Lung probabilities at the segmenter's resolution. */
    private FloatImage segmenterProbabilities(FloatImage image) {
        SegmenterEntry seg = manifest.segmenter();
        if (seg == null) {
            throw new BundleFormatException("segmenter", "bundle has no segmenter", "a bundle built with --segmenter",
                    "none");
        }
        PreprocessedImage x = segmenterPreprocessor.run(image, null);
        Map<String, RawTensor> outputs = runModel(seg, x.inputFor(seg.input().dim(3)));
        TensorSpec mask = seg.outputs().get("mask");
        return new FloatImage(mask.dim(2), mask.dim(1), output(seg, outputs, "mask"));
    }

    private Map<String, RawTensor> runModel(ModelFile model, float[] input) {
        Map<String, RawTensor> outputs = runner.run(model, Quantization.quantize(input, model.input()));
        if (outputs == null) {
            throw new ModelOutputException("model runner returned nothing", "outputs " + model.outputs().keySet(),
                    "null");
        }
        return outputs;
    }

    /** One output, checked against the manifest and dequantised. */
    private static float[] output(ModelFile model, Map<String, RawTensor> outputs, String role) {
        TensorSpec declared = model.outputs().get(role);
        RawTensor t = outputs.get(role);
        if (t == null || declared == null) {
            throw new ModelOutputException("model " + model.name() + " gave no " + role + " output",
                    "outputs " + model.outputs().keySet(), "outputs " + outputs.keySet());
        }
        if (!t.spec().hasShape(declared.shape()) || t.spec().dtype() != declared.dtype()) {
            throw new ModelOutputException("model " + model.name() + " " + role + " output does not match the manifest",
                    declared.toString(), t.spec().toString());
        }
        return Quantization.dequantize(t);
    }

    private static double[] toDouble(float[] v) {
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = v[i];
        }
        return out;
    }

    private static float[] toFloat(double[] v) {
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = (float) v[i];
        }
        return out;
    }

    private static double ms(long t0) {
        return (System.nanoTime() - t0) / 1e6;
    }

    @Override
    public String toString() {
        return "Pipeline(" + manifest.name() + ", members=" + ModelEntry.names(members) + ")";
    }
}
